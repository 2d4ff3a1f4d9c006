//! One FastAGI call, end to end: read the environment block, dispatch on the script name,
//! build the request, load the policy snapshot once, decide, reply, close.
//!
//! This is the only sequencer of a call. It never touches the store: it sees the snapshot.
//! Every step has a deadline, so Asterisk (which waits without a timeout of its own) always
//! gets an answer, or a closed socket, in bounded time. Commands are sent one at a time, each
//! waiting for its `200 result=` reply: Asterisk does not process pipelined commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use crate::agi::command::Command;
use crate::agi::connection::{AgiConnection, ConnError, Limits};
use crate::agi::env::AgiEnv;
use crate::agi::reply::Reply;
use crate::decision::{self, Decision, Trust};
use crate::policy::SharedPolicy;
use crate::request::ScreenRequest;
use crate::resolve::HostResolver;

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
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            trust: Trust::Both,
            limits: Limits::default(),
            env_timeout: Duration::from_secs(1),
            reply_timeout: Duration::from_secs(2),
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

/// Runs one plain-AGI call over stdin/stdout (`AGI(ipcountry,...)`): always screens, since
/// a plain AGI has no script name in the FastAGI sense.
pub async fn run_stdio<R, W>(
    mut conn: AgiConnection<R, W>,
    ctx: &Context,
) -> Result<Outcome, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
    let env = read_env(&mut conn, ctx).await?;
    let outcome = screen(&mut conn, ctx, &env, started).await;
    let _ = conn.shutdown().await;
    Ok(outcome)
}

/// Runs one FastAGI call on `conn`, dispatching on `agi_network_script`. `peer` is the TCP peer.
pub async fn run<R, W>(
    mut conn: AgiConnection<R, W>,
    ctx: &Context,
    peer: Option<SocketAddr>,
) -> Result<Outcome, SessionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let started = Instant::now();
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
            // Tell the admin on the Asterisk console; set nothing, so the dialplan goes on as
            // if the server had not answered.
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

async fn screen<R, W>(
    conn: &mut AgiConnection<R, W>,
    ctx: &Context,
    env: &AgiEnv,
    started: Instant,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let request = ScreenRequest::from_args(&env.args());
    let policy = ctx.policy.load();
    let trust = ctx.settings.trust;
    let dns = match decision::host_to_resolve(&policy, &request, trust) {
        Some(name) => Some(ctx.resolver.lookup(name).await),
        None => None,
    };
    let decision = decision::decide(&policy, &request, trust, dns.as_ref());
    let outcome = reply(conn, ctx.settings.reply_timeout, &decision).await;
    log_call(env, &request, &decision, &outcome, started);
    outcome
}

/// Sets STRANGER, IPCOUNTRY_VERDICT and IPCOUNTRY_REASON, one command at a time.
pub async fn reply<R, W>(
    conn: &mut AgiConnection<R, W>,
    reply_timeout: Duration,
    decision: &Decision,
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
    let commands = [
        Command::SetVariable {
            name: "STRANGER",
            value: stranger,
        },
        Command::SetVariable {
            name: "IPCOUNTRY_VERDICT",
            value: decision.verdict.as_str(),
        },
        Command::SetVariable {
            name: "IPCOUNTRY_REASON",
            value: &decision.reason,
        },
    ];
    for command in &commands {
        if conn.hangup_pending() {
            return Outcome::HungUp;
        }
        match exchange(conn, reply_timeout, command).await {
            Step::Next => {}
            Step::Stop(outcome) => return outcome,
        }
    }
    Outcome::Screened
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

fn log_call(
    env: &AgiEnv,
    request: &ScreenRequest,
    decision: &Decision,
    outcome: &Outcome,
    started: Instant,
) {
    let from_host = request
        .from
        .as_ref()
        .ok()
        .and_then(|f| f.host())
        .map(|h| h.to_string());
    let source = match &request.source {
        Some(Ok(ip)) => Some(ip.to_string()),
        Some(Err(e)) => Some(e.0.clone()),
        None => None,
    };
    info!(
        uniqueid = env.uniqueid().unwrap_or("-"),
        callerid = env.callerid().unwrap_or("-"),
        from_host = from_host.as_deref().unwrap_or("-"),
        source = source.as_deref().unwrap_or("-"),
        verdict = decision.verdict.as_str(),
        reason = %decision.reason,
        country = decision.rule.as_ref().map(|r| r.country.as_str()).unwrap_or("-"),
        ?outcome,
        micros = started.elapsed().as_micros() as u64,
        "screened call"
    );
}
