//! One AGI call, end to end: read the environment block, dispatch on the script name,
//! build the request, load the policy snapshot once, decide, reply, close.
//!
//! This is the only sequencer of a call. It never touches the store: it sees the snapshot.
//! Every step has a deadline, so Asterisk (which waits without a timeout of its own) always
//! gets an answer, or a closed socket, in bounded time. Commands are sent one at a time, each
//! waiting for its `200 result=` reply: Asterisk does not process pipelined commands.
//!
//! # Fail closed
//!
//! Once Asterisk has connected, it reports `AGISTATUS=SUCCESS` whatever the server sends, and a
//! server that says nothing leaves `STRANGER` unset. So **every connection that sends a
//! complete environment block gets an answer**: the verdict, or, when the call cannot be
//! screened (a malformed block, one over the [`Limits`], an unknown script name, an internal
//! error), `STRANGER "true"`, `IPCOUNTRY_VERDICT "error"` and a reason naming the failure,
//! best effort, then the connection is closed and the failure logged once. A block that breaks
//! a limit is read to its end (and thrown away) to be answered. Only a peer that never sent a
//! complete block within the deadline, or is gone, gets nothing.
//!
//! The verdict goes back as one `EXEC MSet` (one round trip, the default; see
//! `agi::command::mset_value` for what happens to commas in the values) or, with
//! [`ReplyMode::SetVariable`], as three `SET VARIABLE` commands (three round trips). The
//! dialplan reads the same variables either way.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::{timeout, timeout_at};
use tracing::{debug, info, warn, Level};

use crate::agi::command::Command;
use crate::agi::connection::{AgiConnection, ConnError, Limits};
use crate::agi::env::{AgiEnv, EnvError};
use crate::agi::reply::Reply;
use crate::alerts::{Alerts, Event};
use crate::decision::{self, Decision, Trust};
use crate::escape::Escaped;
use crate::failures::{Admit, FailureLog};
use crate::metrics::Metrics;
use crate::policy::SharedPolicy;
use crate::request::{CallArgs, ScreenRequest};
use crate::resolve::HostResolver;
use crate::sip::from::Host;

/// Deadlines and bounds of a session. The binary refuses zero deadlines at start-up.
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
    /// How the verdict is written back (default: one `EXEC MSet`).
    pub reply: ReplyMode,
    /// Monitor mode: every call is decided and logged as usual, `IPCOUNTRY_VERDICT` is the
    /// real verdict, but `STRANGER` is always `false` (watch before enforcing).
    pub monitor: bool,
}

/// How a session writes the verdict back to Asterisk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// One `EXEC MSet "STRANGER=…,IPCOUNTRY_VERDICT=…,IPCOUNTRY_REASON=…"`, answered
    /// `200 result=0`: one round trip, the default (checked on Asterisk 20, see the fixtures'
    /// README). `MSet` splits its argument at commas, so the values are rewritten as
    /// `agi::command::mset_value` documents.
    #[default]
    MSet,
    /// `SET VARIABLE STRANGER`, `IPCOUNTRY_VERDICT`, `IPCOUNTRY_REASON`: three commands, three
    /// round trips, each answered `200 result=1`. Values arrive exactly as sent (quoted).
    SetVariable,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            trust: Trust::Both,
            limits: Limits::default(),
            env_timeout: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(2),
            reply: ReplyMode::MSet,
            monitor: false,
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
    /// Failure lines written per peer (one per minute).
    pub failures: FailureLog,
    /// The counters (`--metrics`).
    pub metrics: Arc<Metrics>,
    /// The `--on-stranger` command, if any.
    pub alerts: Option<Alerts>,
}

/// How a session ended (for logs and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The verdict was set in full.
    Screened,
    /// The call could not be screened; the error answer was set in full.
    Failed,
    /// The caller hung up (or the channel died) before all variables were set.
    HungUp,
    /// Asterisk stopped answering, or closed, mid-reply.
    Abandoned,
    /// A `reload` request was accepted (and acknowledged).
    Reloaded,
    /// No complete environment block arrived (the peer stalled, vanished, or sent more than
    /// can be skipped): nothing was sent.
    Dropped,
}

/// The longest `IPCOUNTRY_REASON` written, in bytes (cut at a character boundary): keeps every
/// command far below Asterisk's 2047-byte line.
pub const MAX_REASON: usize = 1024;

/// Why a call could not be screened. Its text is the reason of the error answer.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("bad AGI environment: {0}")]
    Env(EnvError),
    #[error("AGI environment over the limits: {0}")]
    Limit(ConnError),
    #[error("no AGI script name (the URL needs a path: agi://host:4573/screen)")]
    NoScript,
    #[error("unknown AGI script {0:?} (this server runs `screen`)")]
    UnknownScript(String),
    #[error("reload is only taken from a loopback address")]
    ReloadRefused,
    #[error("internal error while screening")]
    Internal,
}

impl Failure {
    /// The metrics label.
    fn kind(&self) -> &'static str {
        match self {
            Failure::Env(_) => "bad_block",
            Failure::Limit(_) => "over_limits",
            Failure::NoScript => "no_script",
            Failure::UnknownScript(_) => "unknown_script",
            Failure::ReloadRefused => "reload_refused",
            Failure::Internal => "internal",
        }
    }
}

/// Runs one plain-AGI call over stdin/stdout (`AGI(ipcountry,agi,${source},${From})`): always
/// screens, on `args` (what Asterisk put on the command line after `agi`, the same as its
/// `agi_arg_N` lines but for the leading program arguments).
pub async fn run_stdio<R, W>(conn: AgiConnection<R, W>, ctx: &Context, args: &[String]) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    call(conn, ctx, None, Some(args)).await
}

/// Runs one FastAGI call on `conn`, dispatching on `agi_network_script`. `peer` is the TCP peer.
pub async fn run<R, W>(
    conn: AgiConnection<R, W>,
    ctx: &Context,
    peer: Option<SocketAddr>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    call(conn, ctx, peer, None).await
}

/// One call: plain AGI (`stdio_args`: screen on them) or FastAGI (dispatch on the script).
async fn call<R, W>(
    mut conn: AgiConnection<R, W>,
    ctx: &Context,
    peer: Option<SocketAddr>,
    stdio_args: Option<&[String]>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let _in_flight = ctx.metrics.session();
    let outcome = match read_env(&mut conn, ctx, started).await {
        Read::Env(env) => match (stdio_args, env.script()) {
            (Some(args), _) => {
                let call = CallArgs::new(args.iter().map(String::as_str));
                screen(&mut conn, ctx, &env, &call, started).await
            }
            (None, Some("screen")) => {
                let call = CallArgs::new(env.args());
                screen(&mut conn, ctx, &env, &call, started).await
            }
            (None, Some("reload")) if peer.is_none_or(|p| p.ip().is_loopback()) => {
                ctx.reload.notify_one();
                info!(?peer, "reload requested over AGI");
                acknowledge_reload(&mut conn, ctx).await
            }
            (None, script) => {
                let failure = match script {
                    Some("reload") => Failure::ReloadRefused,
                    Some(other) => Failure::UnknownScript(other.chars().take(64).collect()),
                    None => Failure::NoScript,
                };
                answer_failure(&mut conn, ctx, peer, Some(&env), failure).await
            }
        },
        Read::Failed(failure) => answer_failure(&mut conn, ctx, peer, None, failure).await,
        Read::Dropped(error) => dropped(ctx, peer, error),
    };
    // Asterisk never closes the socket itself (not even after HANGUP): we must.
    let _ = conn.shutdown().await;
    outcome
}

/// What reading the environment block gave.
enum Read {
    /// The block, parsed.
    Env(AgiEnv),
    /// A complete block that cannot be screened: answer it.
    Failed(Failure),
    /// No complete block: answer nothing.
    Dropped(Option<ConnError>),
}

/// Reads the block within the environment deadline (from `started`, when the call began); a
/// block over the limits is skipped to its end (within the same deadline) so that it can be
/// answered.
async fn read_env<R, W>(conn: &mut AgiConnection<R, W>, ctx: &Context, started: Instant) -> Read
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::from_std(started) + ctx.settings.env_timeout;
    match timeout_at(deadline, conn.read_env()).await {
        Ok(Ok(env)) => Read::Env(env),
        Ok(Err(ConnError::Env(e))) => Read::Failed(Failure::Env(e)),
        Ok(Err(e)) if e.is_limit() => match timeout_at(deadline, conn.skip_env()).await {
            Ok(Ok(())) => Read::Failed(Failure::Limit(e)),
            Ok(Err(skip)) => Read::Dropped(Some(skip)),
            Err(_) => Read::Dropped(Some(e)),
        },
        Ok(Err(e)) => Read::Dropped(Some(e)),
        Err(_) => Read::Dropped(None),
    }
}

fn dropped(ctx: &Context, peer: Option<SocketAddr>, error: Option<ConnError>) -> Outcome {
    // A peer that closes without a word is a port check, or Asterisk's own retry.
    if let Some(ConnError::Closed { partial: false }) = error {
        debug!(?peer, "peer closed before sending anything");
        return Outcome::Dropped;
    }
    if let Admit::Log { left_out } = ctx.failures.admit(peer.map(|p| p.ip()), Instant::now()) {
        let error = error.map_or_else(|| "no complete block in time".to_owned(), |e| e.to_string());
        warn!(
            ?peer,
            %error,
            more_from_peer_in_last_minute = left_out,
            "dropped AGI peer: no complete environment block"
        );
    }
    Outcome::Dropped
}

/// Screens one call: request → snapshot → (DNS) → decision → reply.
async fn screen<R, W>(
    conn: &mut AgiConnection<R, W>,
    ctx: &Context,
    env: &AgiEnv,
    call: &CallArgs<'_>,
    started: Instant,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let trust = ctx.settings.trust;
    let policy = ctx.policy.load();
    // Parsing and deciding are pure; a bug in them must still give a stranger, not a silent
    // close (which the dialplan would have to catch). The panic hook has printed the panic.
    let Ok((request, name)) = catch_unwind(AssertUnwindSafe(|| {
        let request = ScreenRequest::parse(call);
        let name = decision::host_to_resolve(&policy, &request, trust).map(str::to_owned);
        (request, name)
    })) else {
        return answer_failure(conn, ctx, None, Some(env), Failure::Internal).await;
    };
    let dns = match name {
        // Boxed: the resolver's future is large, and most calls resolve nothing.
        Some(name) => Some(Box::pin(ctx.resolver.lookup(&name)).await),
        None => None,
    };
    let Ok(decision) = catch_unwind(AssertUnwindSafe(|| {
        decision::decide(&policy, &request, trust, dns.as_ref())
    })) else {
        return answer_failure(conn, ctx, None, Some(env), Failure::Internal).await;
    };
    // Sized once for the usual reason (`geolite US 8.7.245.0-8.14.196.255`), not grown.
    let mut reason = String::with_capacity(64);
    let _ = decision.reason.write_to(&mut reason);
    let answer = Answer {
        // Monitor mode: decided and logged as usual, and let through.
        stranger: decision.verdict.is_stranger() && !ctx.settings.monitor,
        verdict: decision.verdict.as_str(),
        reason: &reason,
    };
    let outcome = reply(conn, &ctx.settings, &answer).await;
    let elapsed = started.elapsed();
    ctx.metrics.call(
        decision.verdict,
        decision.reason.kind(),
        elapsed.as_secs_f64(),
    );
    log_call(ctx, env, &request, &decision, &reason, &outcome, elapsed);
    if let Some(view) = policy.shadow() {
        // Shadow rules: what the call would have got with them deciding, logged, not applied.
        // No lookup is made for them: a From name only they would have needed resolved is
        // judged unresolved.
        if let Ok(Some((would_be, rule))) = catch_unwind(AssertUnwindSafe(|| {
            decision::shadow_match(view, &request, trust, dns.as_ref())
        })) {
            ctx.metrics
                .shadow(would_be.as_str(), decision.verdict.as_str());
            log_shadow(env, &request, &decision, would_be, &rule);
        }
    }
    if let (Some(alerts), true) = (&ctx.alerts, decision.verdict.is_stranger()) {
        alerts.offer(alert_event(env, &request, &decision, reason));
    }
    outcome
}

/// The error answer, then one log line.
async fn answer_failure<R, W>(
    conn: &mut AgiConnection<R, W>,
    ctx: &Context,
    peer: Option<SocketAddr>,
    env: Option<&AgiEnv>,
    failure: Failure,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    ctx.metrics.failure(failure.kind());
    let reason = failure.to_string();
    let answer = Answer {
        stranger: !ctx.settings.monitor,
        verdict: "error",
        reason: &reason,
    };
    let outcome = match reply(conn, &ctx.settings, &answer).await {
        Outcome::Screened => Outcome::Failed,
        other => other,
    };
    if let Admit::Log { left_out } = ctx.failures.admit(peer.map(|p| p.ip()), Instant::now()) {
        warn!(
            ?peer,
            uniqueid = %Escaped(env.and_then(AgiEnv::uniqueid).unwrap_or("-")),
            callerid = %Escaped(env.and_then(AgiEnv::callerid).unwrap_or("-")),
            error = %failure,
            ?outcome,
            monitor = ctx.settings.monitor,
            more_from_peer_in_last_minute = left_out,
            "call not screened; answered IPCOUNTRY_VERDICT=error"
        );
    }
    outcome
}

/// `reload`: tell the client (`ipcountry reload`) it was taken.
async fn acknowledge_reload<R, W>(conn: &mut AgiConnection<R, W>, ctx: &Context) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let verbose = Command::Verbose {
        message: "ipcountry: reloading",
        level: 1,
    };
    match exchange(conn, ctx.settings.reply_timeout, &verbose).await {
        Step::Next => Outcome::Reloaded,
        Step::Stop(outcome) => outcome,
    }
}

/// What is written back: the three variables' values.
struct Answer<'a> {
    stranger: bool,
    verdict: &'a str,
    reason: &'a str,
}

/// Sets `STRANGER`, `IPCOUNTRY_VERDICT` and `IPCOUNTRY_REASON` as the settings say, then
/// closes: Asterisk's dialplan goes on at the close, so the log line and the rest of the call's
/// bookkeeping are not its wait (issue 18). [`call`]'s own close is then a no-op.
async fn reply<R, W>(
    conn: &mut AgiConnection<R, W>,
    settings: &SessionSettings,
    answer: &Answer<'_>,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let vars = [
        ("STRANGER", if answer.stranger { "true" } else { "false" }),
        ("IPCOUNTRY_VERDICT", answer.verdict),
        ("IPCOUNTRY_REASON", cap(answer.reason, MAX_REASON)),
    ];
    let mset = [Command::MSet { vars: &vars }];
    let each = vars.map(|(name, value)| Command::SetVariable { name, value });
    let commands: &[Command<'_>] = match settings.reply {
        ReplyMode::SetVariable => &each,
        ReplyMode::MSet => &mset,
    };
    let mut outcome = Outcome::Screened;
    for command in commands {
        if conn.hangup_pending() {
            outcome = Outcome::HungUp;
            break;
        }
        if let Step::Stop(stop) = exchange(conn, settings.reply_timeout, command).await {
            outcome = stop;
            break;
        }
    }
    let _ = conn.shutdown().await;
    outcome
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cap(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

enum Step {
    Next,
    Stop(Outcome),
}

/// Sends one command and waits for its reply.
async fn exchange<R, W>(
    conn: &mut AgiConnection<R, W>,
    reply_timeout: Duration,
    command: &Command<'_>,
) -> Step
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
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

/// The alert for a call that was not let through.
fn alert_event(
    env: &AgiEnv,
    request: &ScreenRequest<'_>,
    decision: &Decision<'_>,
    reason: String,
) -> Event {
    Event {
        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        uniqueid: env.uniqueid().unwrap_or_default().to_owned(),
        callerid: env.callerid().unwrap_or_default().to_owned(),
        from: request
            .from
            .as_ref()
            .map_or_else(String::new, |f| f.raw.to_owned()),
        source: source_text(request, "").into_owned(),
        verdict: decision.verdict.as_str(),
        reason,
        rule: decision.rule.map(ToString::to_string),
        country: decision.rule.map(|r| r.country.clone()),
        source_ip: request.source.as_ref().ok().copied(),
        peer: None,
    }
}

/// The source argument as the caller gave it: the address, or the text that is not one, or
/// `missing`.
fn source_field<'r>(request: &'r ScreenRequest<'_>, missing: &'static str) -> line::Field<'r> {
    match &request.source {
        Ok(ip) => line::Field::Ip(*ip),
        Err(crate::request::SourceError::Bad(text)) => line::Field::Text(text),
        Err(crate::request::SourceError::Missing) => line::Field::Text(missing),
    }
}

/// [`source_field`] as text.
fn source_text<'r>(request: &'r ScreenRequest<'_>, missing: &'static str) -> Cow<'r, str> {
    match source_field(request, missing) {
        line::Field::Ip(ip) => Cow::Owned(crate::ip_text::IpText(ip).to_string()),
        line::Field::Text(text) => Cow::Borrowed(text),
    }
}

/// The per-call `info` line (`reason`: the decision's reason, formatted once for the reply). Everything the caller wrote is escaped. Nothing is formatted
/// when the line would not be written.
fn log_call(
    ctx: &Context,
    env: &AgiEnv,
    request: &ScreenRequest<'_>,
    decision: &Decision<'_>,
    reason: &str,
    outcome: &Outcome,
    elapsed: Duration,
) {
    if !tracing::enabled!(Level::INFO) {
        return;
    }
    // The addresses are written into the line as they are, with no string made for them.
    let from_host = match request
        .from
        .as_ref()
        .and_then(|f| f.header.as_ref().ok())
        .and_then(|h| h.host())
    {
        Some(Host::Ip(ip)) => line::Field::Ip(*ip),
        Some(Host::Domain(name)) => line::Field::Text(name),
        None => line::Field::Text("-"),
    };
    let source = source_field(request, "-");
    line::CallLine {
        uniqueid: env.uniqueid().unwrap_or("-"),
        callerid: env.callerid().unwrap_or("-"),
        from_host,
        source,
        verdict: decision.verdict.as_str(),
        monitor: ctx.settings.monitor,
        reason,
        country: decision.rule.as_ref().map_or("-", |r| r.country.as_str()),
        outcome,
        micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
    }
    .write();
}

/// The `info` line of a call a shadow rule matched, beside its own.
fn log_shadow(
    env: &AgiEnv,
    request: &ScreenRequest<'_>,
    decision: &Decision<'_>,
    would_be: decision::Verdict,
    rule: &str,
) {
    let source = source_text(request, "-");
    info!(
        uniqueid = %Escaped(env.uniqueid().unwrap_or("-")),
        source = %Escaped(&source),
        would_be = would_be.as_str(),
        verdict = decision.verdict.as_str(),
        rule = %Escaped(rule),
        "shadow rule matched"
    );
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;

#[path = "session_line.rs"]
mod line;
