//! One FastAGI call, end to end: read the environment block, dispatch on the script name,
//! build the request, load the policy snapshot once, decide, reply, close.
//!
//! This is the only sequencer of a call. It never touches the store: it sees the snapshot.
//! Every step has a deadline, so Asterisk (which waits without a timeout of its own) always
//! gets an answer, or a closed socket, in bounded time. Commands are sent one at a time, each
//! waiting for its `200 result=` reply: Asterisk does not process pipelined commands.
//!
//! The verdict goes back as three `SET VARIABLE` commands (three round trips, the default) or,
//! with [`ReplyMode::MSet`], as one `EXEC MSet` (one round trip; see [`mset_args`] for what
//! happens to commas in the values).

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::timeout;
use tracing::{debug, info, warn, Level};

use crate::agi::command::Command;
use crate::agi::connection::{AgiConnection, ConnError, Limits};
use crate::agi::env::AgiEnv;
use crate::agi::reply::Reply;
use crate::decision::{self, Decision, Trust};
use crate::policy::SharedPolicy;
use crate::request::{ScreenRequest, SourceError};
use crate::resolve::HostResolver;
use crate::sip::from::Host;

/// Deadlines and bounds of a session.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Which addresses are checked.
    pub trust: Trust,
    /// Line, block and line-count limits for the environment block.
    pub limits: Limits,
    /// Deadline for the whole environment block to arrive (default 1 s; Asterisk sends it at once).
    pub env_timeout: Duration,
    /// Deadline for each reply from Asterisk (default 2 s).
    pub reply_timeout: Duration,
    /// How the verdict is written back (default: three `SET VARIABLE`s).
    pub reply: ReplyMode,
}

/// How a session writes the verdict back to Asterisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReplyMode {
    /// `SET VARIABLE STRANGER`, `IPCOUNTRY_VERDICT`, `IPCOUNTRY_REASON`: three commands, three
    /// round trips, each answered `200 result=1`. Values arrive exactly as sent (quoted).
    #[default]
    #[value(name = "set-variable")]
    SetVariable,
    /// One `EXEC MSet "STRANGER=…,IPCOUNTRY_VERDICT=…,IPCOUNTRY_REASON=…"`, answered
    /// `200 result=0`: one round trip. `MSet` splits its argument at commas, so the reason is
    /// rewritten as [`mset_args`] documents.
    #[value(name = "mset")]
    MSet,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            trust: Trust::Both,
            limits: Limits::default(),
            env_timeout: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(2),
            reply: ReplyMode::SetVariable,
        }
    }
}

/// What every session shares: the policy snapshot, the resolver, the settings.
#[derive(Debug)]
pub struct Context {
    /// The current policy.
    pub policy: Arc<SharedPolicy>,
    /// From-hostname resolution.
    pub resolver: HostResolver,
    /// Deadlines and bounds.
    pub settings: SessionSettings,
    /// Poked by the `reload` script to rebuild the snapshot now.
    pub reload: Arc<Notify>,
}

/// How a session ended (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The verdict was set in full.
    Screened,
    /// The caller hung up (or the channel died) before all variables were set.
    HungUp,
    /// Asterisk stopped answering, or closed, mid-reply.
    Abandoned,
    /// A `reload` request was accepted.
    Reloaded,
    /// An unknown script or a missing script name: nothing was set.
    Unknown,
}

/// Why a session failed before it could screen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The environment block did not arrive in time.
    #[error("no complete AGI environment within {0:?}")]
    EnvTimeout(Duration),
    /// The environment block was malformed, oversized, or the peer vanished.
    #[error("bad AGI environment: {0}")]
    Env(#[source] ConnError),
}

// `run` and `run_stdio` are written as functions returning an `async move` block rather than
// as `async fn`s: an `async fn` keeps its arguments twice in its future (as captured and as
// moved-in local), and the connection is the largest of them. Every byte of a call's future is
// copied several times when the server spawns the call's task.

/// Runs one plain-AGI call over stdin/stdout (`AGI(ipcountry,...)`): always screens, since
/// a plain AGI has no script name in the FastAGI sense.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` stores its arguments twice"
)]
pub fn run_stdio<'a, R, W>(
    mut conn: AgiConnection<R, W>,
    ctx: &'a Context,
) -> impl Future<Output = Result<Outcome, SessionError>> + use<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        let started = call_started();
        let env = read_env(&mut conn, ctx).await?;
        let outcome = screen(&mut conn, ctx, &env, started).await;
        let _ = conn.shutdown().await;
        Ok(outcome)
    }
}

/// Runs one FastAGI call on `conn`, dispatching on `agi_network_script`. `peer` is the TCP peer.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` stores its arguments twice"
)]
pub fn run<'a, R, W>(
    mut conn: AgiConnection<R, W>,
    ctx: &'a Context,
    peer: Option<SocketAddr>,
) -> impl Future<Output = Result<Outcome, SessionError>> + use<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        let started = call_started();
        let env = read_env(&mut conn, ctx).await?;
        let outcome = match env.script() {
            Some("screen") => screen(&mut conn, ctx, &env, started).await,
            Some("reload") if peer.is_none_or(|p| p.ip().is_loopback()) => {
                ctx.reload.notify_one();
                info!(?peer, "reload requested over AGI");
                Outcome::Reloaded
            }
            other => {
                warn!(script = ?other, ?peer, uniqueid = env.uniqueid(), "unknown AGI script; nothing set");
                // Tell the admin on the Asterisk console; set nothing, so the dialplan goes on
                // as if the server had not answered.
                let message = format!("ipcountry: unknown AGI script {:?}", other.unwrap_or(""));
                let verbose = Command::Verbose {
                    message: &message,
                    level: 1,
                };
                let _ = exchange(&mut conn, ctx.settings.reply_timeout, &verbose).await;
                Outcome::Unknown
            }
        };
        // Asterisk never closes the socket itself (not even after HANGUP): we must.
        let _ = conn.shutdown().await;
        Ok(outcome)
    }
}

async fn read_env<R, W>(
    conn: &mut AgiConnection<R, W>,
    ctx: &Context,
) -> Result<AgiEnv, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match timeout(ctx.settings.env_timeout, conn.read_env()).await {
        Err(_) => Err(SessionError::EnvTimeout(ctx.settings.env_timeout)),
        Ok(Err(e)) => Err(SessionError::Env(e)),
        Ok(Ok(env)) => Ok(env),
    }
}

#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` stores its arguments twice"
)]
fn screen<'a, R, W>(
    conn: &'a mut AgiConnection<R, W>,
    ctx: &'a Context,
    env: &'a AgiEnv,
    started: Option<Instant>,
) -> impl Future<Output = Outcome> + use<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        let [from, source] = env.first_two_args();
        let policy = ctx.policy.load();
        // The request is not kept across the reply's round trip (it would be most of this
        // future, which is copied as a whole when the call's task is spawned): it lives in this
        // block, and the log line takes the little it needs from it, only when it will be written.
        let (decision, facts) = {
            let request = ScreenRequest::new(from.as_deref().unwrap_or(""), source.as_deref());
            let trust = ctx.settings.trust;
            let dns = match decision::host_to_resolve(&policy, &request, trust) {
                // Boxed: the resolver's future is large, and held inline it would make every
                // call's task large too (most calls have an IP literal and resolve nothing).
                Some(name) => Some(Box::pin(ctx.resolver.lookup(name)).await),
                None => None,
            };
            let decision = decision::decide(&policy, &request, trust, dns.as_ref());
            let facts = started.map(|started| Box::new(CallFacts::new(request, started)));
            (decision, facts)
        };
        let outcome = match ctx.settings.reply {
            ReplyMode::SetVariable => reply(conn, ctx.settings.reply_timeout, &decision).await,
            ReplyMode::MSet => reply_mset(conn, ctx.settings.reply_timeout, &decision).await,
        };
        if let Some(facts) = facts {
            log_call(env, *facts, &decision, &outcome);
        }
        outcome
    }
}

/// Sets STRANGER, IPCOUNTRY_VERDICT and IPCOUNTRY_REASON, one command at a time.
pub async fn reply<R, W>(
    conn: &mut AgiConnection<R, W>,
    reply_timeout: Duration,
    decision: &Decision<'_>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stranger = if decision.verdict.is_stranger() {
        "true"
    } else {
        "false"
    };
    let mut reason = String::new();
    // Writing into a `String` cannot fail.
    let _ = decision.reason.write_to(&mut reason);
    let commands = [
        ("STRANGER", stranger),
        ("IPCOUNTRY_VERDICT", decision.verdict.as_str()),
        ("IPCOUNTRY_REASON", reason.as_str()),
    ];
    for (name, value) in commands {
        if conn.hangup_pending() {
            return Outcome::HungUp;
        }
        let command = Command::SetVariable { name, value };
        match exchange(conn, reply_timeout, &command).await {
            Step::Next => {}
            Step::Stop(outcome) => return outcome,
        }
    }
    Outcome::Screened
}

/// Sets STRANGER, IPCOUNTRY_VERDICT and IPCOUNTRY_REASON with one `EXEC MSet` (one round
/// trip). Asterisk answers `200 result=0` (MSet's return value).
pub async fn reply_mset<R, W>(
    conn: &mut AgiConnection<R, W>,
    reply_timeout: Duration,
    decision: &Decision<'_>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if conn.hangup_pending() {
        return Outcome::HungUp;
    }
    let args = mset_args(decision);
    let command = Command::Exec {
        app: "MSet",
        args: &args,
    };
    match exchange(conn, reply_timeout, &command).await {
        Step::Next => Outcome::Screened,
        Step::Stop(outcome) => outcome,
    }
}

/// Longest reason written by [`mset_args`], in bytes: keeps the `EXEC` line far below
/// Asterisk's 2047-byte command limit.
pub const MSET_MAX_REASON: usize = 1024;

/// The argument of `EXEC MSet` for `decision`:
/// `STRANGER=<true|false>,IPCOUNTRY_VERDICT=<verdict>,IPCOUNTRY_REASON=<reason>`.
///
/// `MSet` splits its argument with Asterisk's application-argument parser: `,` separates
/// assignments, `"` toggles quoting and is removed, `\` escapes the next character and is
/// removed, and `(`…`)` / `[`…`]` group. A comma in a value would therefore cut the reason
/// short, or, followed by `NAME=`, set another variable. Rather than rely on escapes being
/// undone exactly once, the reason is rewritten so that the parser has nothing to do:
/// **`,` becomes `;`, `"` becomes `'`, and `\` becomes `/`**; it is also cut to
/// [`MSET_MAX_REASON`] bytes (at a character boundary). The other two values are fixed words.
/// The reason is the last assignment, so a `(` or `[` in it cannot swallow a later one.
/// Control characters are replaced by spaces when the command is encoded, as for every value.
/// With [`ReplyMode::SetVariable`] the reason arrives unchanged.
pub fn mset_args(decision: &Decision) -> String {
    let stranger = if decision.verdict.is_stranger() {
        "true"
    } else {
        "false"
    };
    let mut out = String::with_capacity(128);
    out.push_str("STRANGER=");
    out.push_str(stranger);
    out.push_str(",IPCOUNTRY_VERDICT=");
    out.push_str(decision.verdict.as_str());
    out.push_str(",IPCOUNTRY_REASON=");
    // The reason is written straight into the argument, then cut and rewritten in place.
    let start = out.len();
    // Writing into a `String` cannot fail.
    let _ = decision.reason.write_to(&mut out);
    if out.len() - start > MSET_MAX_REASON {
        let mut cut = start + MSET_MAX_REASON;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    // Rule reasons are addresses, words and numbers; only notes and DNS errors may hold one of
    // these characters, so this copy is rare.
    if out.as_bytes()[start..]
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\\'))
    {
        let reason: String = out[start..]
            .chars()
            .map(|c| match c {
                ',' => ';',
                '"' => '\'',
                '\\' => '/',
                c => c,
            })
            .collect();
        out.truncate(start);
        out.push_str(&reason);
    }
    out
}

enum Step {
    Next,
    Stop(Outcome),
}

/// Sends one command and waits for its reply.
#[allow(
    clippy::manual_async_fn,
    reason = "an `async fn` stores its arguments twice"
)]
fn exchange<'a, R, W>(
    conn: &'a mut AgiConnection<R, W>,
    reply_timeout: Duration,
    command: &'a Command<'_>,
) -> impl Future<Output = Step> + use<'a, R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    async move {
        if let Err(error) = conn.send(command).await {
            debug!(%error, "cannot send AGI command");
            return Step::Stop(Outcome::Abandoned);
        }
        match timeout(reply_timeout, conn.read_reply()).await {
            Err(_) => {
                warn!(
                    ?reply_timeout,
                    "Asterisk did not answer an AGI command in time"
                );
                Step::Stop(Outcome::Abandoned)
            }
            Ok(Err(error)) => {
                debug!(%error, "AGI connection lost while waiting for a reply");
                Step::Stop(Outcome::Abandoned)
            }
            Ok(Ok(Reply::Success { .. })) => Step::Next,
            // HANGUP comes once, unprompted, when the caller hangs up: the call is over.
            Ok(Ok(Reply::Hangup)) | Ok(Ok(Reply::DeadChannel)) => Step::Stop(Outcome::HungUp),
            Ok(Ok(other)) => {
                warn!(reply = ?other, "Asterisk refused an AGI command; going on");
                Step::Next
            }
        }
    }
}

/// When the call started, if the per-call `info` line will be written (otherwise the clock is
/// not read at all).
fn call_started() -> Option<Instant> {
    tracing::enabled!(Level::INFO).then(Instant::now)
}

/// What the per-call `info` line needs from the request.
struct CallFacts<'a> {
    started: Instant,
    from_host: Option<Host<'a>>,
    source: Option<Result<IpAddr, SourceError>>,
}

impl<'a> CallFacts<'a> {
    fn new(request: ScreenRequest<'a>, started: Instant) -> Self {
        CallFacts {
            started,
            from_host: request.from.ok().and_then(|f| f.uri.host),
            source: request.source,
        }
    }
}

fn log_call(env: &AgiEnv, facts: CallFacts<'_>, decision: &Decision<'_>, outcome: &Outcome) {
    // Nothing below is computed when the line would not be written.
    if !tracing::enabled!(Level::INFO) {
        return;
    }
    let from_host = OrDash(facts.from_host.as_ref());
    let source = OrDash(facts.source.as_ref().map(|s| match s {
        Ok(ip) => SourceText::Ip(*ip),
        Err(e) => SourceText::Bad(&e.0),
    }));
    info!(
        uniqueid = env.uniqueid().unwrap_or("-"),
        callerid = env.callerid().unwrap_or("-"),
        from_host = %from_host,
        source = %source,
        verdict = decision.verdict.as_str(),
        reason = %decision.reason,
        country = decision.rule.as_ref().map(|r| r.country.as_str()).unwrap_or("-"),
        ?outcome,
        micros = facts.started.elapsed().as_micros() as u64,
        "screened call"
    );
}

/// Displays the value, or `-` for `None`, without building a `String`.
struct OrDash<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for OrDash<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The source argument as logged: the address, or the text that was not one.
enum SourceText<'a> {
    Ip(std::net::IpAddr),
    Bad(&'a str),
}

impl fmt::Display for SourceText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceText::Ip(ip) => ip.fmt(f),
            SourceText::Bad(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Reason, Verdict};

    fn decision(verdict: Verdict, reason: &str) -> Decision<'static> {
        Decision {
            verdict,
            reason: Reason::Text(reason.to_owned()),
            rule: None,
            checks: Vec::new(),
        }
    }

    #[test]
    fn mset_args_plain() {
        assert_eq!(
            mset_args(&decision(
                Verdict::Stranger,
                "no permit range for 198.51.100.9"
            )),
            "STRANGER=true,IPCOUNTRY_VERDICT=stranger,IPCOUNTRY_REASON=no permit range for 198.51.100.9"
        );
        assert_eq!(
            mset_args(&decision(
                Verdict::Permit,
                "permit #1 203.0.113.0/24 office"
            )),
            "STRANGER=false,IPCOUNTRY_VERDICT=permitted,IPCOUNTRY_REASON=permit #1 203.0.113.0/24 office"
        );
        assert_eq!(
            mset_args(&decision(Verdict::Deny, "deny #1 203.0.113.66/32")),
            "STRANGER=true,IPCOUNTRY_VERDICT=denied,IPCOUNTRY_REASON=deny #1 203.0.113.66/32"
        );
    }

    #[test]
    fn mset_args_leave_the_argument_parser_nothing_to_split() {
        let hostile = r#"deny #7 1.2.3.0/24 a,b,STRANGER=false "q" \, (x"#;
        let args = mset_args(&decision(Verdict::Deny, hostile));
        assert_eq!(
            args,
            "STRANGER=true,IPCOUNTRY_VERDICT=denied,IPCOUNTRY_REASON=deny #7 1.2.3.0/24 a;b;STRANGER=false 'q' /; (x"
        );
        assert_eq!(args.matches(',').count(), 2, "exactly three assignments");
        assert!(!args.contains('"') && !args.contains('\\'));
    }

    #[test]
    fn mset_args_cut_long_reasons_at_a_char_boundary() {
        let long = "é".repeat(MSET_MAX_REASON); // 2 bytes each
        let args = mset_args(&decision(Verdict::Stranger, &long));
        let reason = args
            .split_once("IPCOUNTRY_REASON=")
            .map(|(_, r)| r)
            .unwrap_or_default();
        assert_eq!(reason.len(), MSET_MAX_REASON);
        assert!(reason.chars().all(|c| c == 'é'));
        let mut out = Vec::new();
        let encoded = Command::Exec {
            app: "MSet",
            args: &args,
        }
        .encode(&mut out);
        assert_eq!(
            encoded,
            Ok(()),
            "the EXEC line stays under Asterisk's limit"
        );
    }
}
