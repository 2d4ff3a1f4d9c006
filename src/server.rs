//! The accept loop: bounded concurrency, accept backoff, graceful drain.
//!
//! [`run`] takes its listeners, the shared [`Context`] and a shutdown token as arguments and
//! never binds a port itself (tests pass `127.0.0.1:0`). A semaphore permit is taken *before*
//! `accept`, so at most `max_sessions` calls run at once and further connections wait in the
//! kernel's backlog (backpressure) instead of piling up as tasks. On shutdown the listeners
//! close at once, calls in flight get `grace` to finish, then are dropped.
//!
//! [`run`] serves on the runtime it is called from. [`run_per_core`] starts one
//! single-threaded runtime per worker thread, each accepting on listening sockets of its own,
//! with the same semaphore, task tracker and shutdown: a call then lives on one thread from
//! `accept` to close, with no work stealing and no cross-thread wake-ups. With more than one
//! worker the sockets are bound with `SO_REUSEPORT` ([`bind_per_worker`]), so the kernel hands
//! each connection to one worker instead of waking all of them (what shared sockets did: it
//! doubled the CPU per call on two workers). `ipcountry serve` runs one worker by default;
//! see BENCHMARKS.md for the figures.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::agi::connection::AgiConnection;
use crate::failures::Admit;
use crate::session::{self, Context};

/// The most calls a server may handle at once (`--max-sessions`): each holds a socket, and
/// far fewer file descriptors than this are available on any PBX.
pub const MAX_SESSIONS: usize = 65_536;

/// Bounds of the server, built only by [`ServerOptions::new`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    max_sessions: usize,
    grace: Duration,
    allowed: Vec<IpNet>,
}

/// A server bound out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("max_sessions must be from 1 to {MAX_SESSIONS}, not {0}")]
pub struct OptionsError(usize);

impl ServerOptions {
    /// `max_sessions` calls at once (1 to [`MAX_SESSIONS`]); `grace` for calls in flight to
    /// finish after shutdown begins.
    pub fn new(max_sessions: usize, grace: Duration) -> Result<ServerOptions, OptionsError> {
        if !(1..=MAX_SESSIONS).contains(&max_sessions) {
            return Err(OptionsError(max_sessions));
        }
        Ok(ServerOptions {
            max_sessions,
            grace,
            allowed: Vec::new(),
        })
    }

    /// Peers taken besides loopback ones (`--allow-client`). FastAGI has no authentication:
    /// any other peer is closed before a byte is read.
    pub fn allow_clients(mut self, nets: impl IntoIterator<Item = IpNet>) -> ServerOptions {
        self.allowed.extend(nets);
        self
    }

    /// Whether a connection from `ip` is taken.
    fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_loopback() || self.allowed.iter().any(|net| net.contains(&ip))
    }
}

impl Default for ServerOptions {
    /// 1024 calls at once, 5 s of grace.
    fn default() -> Self {
        ServerOptions {
            max_sessions: 1024,
            grace: Duration::from_secs(5),
            allowed: Vec::new(),
        }
    }
}

/// Serves FastAGI calls on `listeners` until `shutdown` is cancelled, then drains.
pub async fn run(
    listeners: Vec<TcpListener>,
    ctx: Arc<Context>,
    options: ServerOptions,
    shutdown: CancellationToken,
) {
    // The runtime is the caller's and outlives the server: calls are dropped one by one.
    let shared = Shared::new(&options, shutdown, HardStop::EachCall);
    let ticker = Arc::new(Ticker::default());
    tokio::spawn(keep_timer_armed(
        shared.shutdown.clone(),
        shared.tracker.clone(),
        ticker.clone(),
    ));
    let mut accept_loops = Vec::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening on {addr}");
        }
        accept_loops.push(tokio::spawn(accept_loop(
            listener,
            ctx.clone(),
            shared.clone(),
            ticker.clone(),
        )));
    }
    shared.shutdown.cancelled().await;
    stop_accepting(accept_loops).await;
    shared.drain(options.grace).await;
    info!("server stopped");
}

/// Binds the listening sockets of `workers` workers: one socket per address and worker. For
/// one worker, plain sockets; for more, every worker's socket for an address is bound with
/// `SO_REUSEPORT` to the same port (port 0 is resolved by the first bind, and the others take
/// the port it got). Call from within a tokio runtime; the sockets come back non-blocking,
/// ready for [`run_per_core`].
pub fn bind_per_worker(
    addrs: &[SocketAddr],
    workers: usize,
) -> io::Result<Vec<Vec<std::net::TcpListener>>> {
    let workers = workers.max(1);
    let mut per_worker: Vec<Vec<std::net::TcpListener>> =
        (0..workers).map(|_| Vec::new()).collect();
    for &addr in addrs {
        let mut bound = addr;
        for sockets in per_worker.iter_mut() {
            let socket = match bound {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.set_reuseaddr(true)?;
            if workers > 1 {
                socket.set_reuseport(true)?;
            }
            socket.bind(bound)?;
            let listener = socket.listen(BACKLOG)?;
            bound = listener.local_addr()?;
            sockets.push(listener.into_std()?);
        }
    }
    Ok(per_worker)
}

/// The listen backlog: connections beyond `max_sessions` wait here.
const BACKLOG: u32 = 1024;

/// Serves FastAGI calls on one thread per element of `per_worker`, each running its own
/// current-thread tokio runtime that accepts on that element's listeners (from
/// [`bind_per_worker`]), until `shutdown` is cancelled; then drains like [`run`] and joins
/// the threads.
///
/// The listeners must be in non-blocking mode. Call this from any tokio runtime: it only
/// waits. `max_sessions` and `grace` are shared by all workers. Fails, before serving
/// anything, if a worker thread or runtime cannot be started.
pub async fn run_per_core(
    per_worker: Vec<Vec<std::net::TcpListener>>,
    ctx: Arc<Context>,
    options: ServerOptions,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // Each worker's runtime ends with its thread: a hard stop drops it, and its calls with it.
    let shared = Shared::new(&options, shutdown, HardStop::WithRuntime);
    // Set up every runtime first, so a failure leaves nothing running.
    let mut plans = Vec::new();
    let workers = per_worker.len();
    for listeners in per_worker {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        plans.push((listeners, runtime));
    }
    if let Some((listeners, _)) = plans.first() {
        for l in listeners {
            if let Ok(addr) = l.local_addr() {
                info!(%addr, workers, "listening on {addr}");
            }
        }
    }
    let mut threads = Vec::new();
    let mut accepting = Vec::new();
    for (n, (clones, runtime)) in plans.into_iter().enumerate() {
        let (done_tx, done_rx) = oneshot::channel::<()>();
        accepting.push(done_rx);
        let ctx = ctx.clone();
        let for_worker = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ipcountry-worker-{n}"))
            .spawn(move || runtime.block_on(worker(clones, ctx, for_worker, done_tx)));
        match spawned {
            Ok(handle) => threads.push(handle),
            Err(e) => {
                // Stop the workers already running, then report.
                shared.shutdown.cancel();
                shared.tracker.close();
                join(threads).await;
                return Err(e);
            }
        }
    }
    shared.shutdown.cancelled().await;
    for done in accepting {
        // Err: the worker is gone already (its accept loops ended, or it panicked).
        let _ = done.await;
    }
    shared.drain(options.grace).await;
    join(threads).await;
    info!("server stopped");
    Ok(())
}

/// What every accept loop and session of one server shares.
#[derive(Clone)]
struct Shared {
    permits: Arc<Semaphore>,
    /// The peers taken besides loopback.
    allowed: Arc<ServerOptions>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Cancelled when the grace period is over: sessions still running are dropped.
    hard_stop: CancellationToken,
    /// How they are dropped.
    drop_calls: HardStop,
}

/// How the calls still running at the end of the grace period are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HardStop {
    /// Each call's task races its call against `hard_stop` ([`run`], on a runtime it does
    /// not own). The race costs a lock of the token's waiter list on every wake of the call.
    EachCall,
    /// The worker returns from its runtime, which drops every task still on it
    /// ([`run_per_core`]): the calls pay nothing for it.
    WithRuntime,
}

impl Shared {
    fn new(options: &ServerOptions, shutdown: CancellationToken, drop_calls: HardStop) -> Self {
        Shared {
            permits: Arc::new(Semaphore::new(options.max_sessions)),
            allowed: Arc::new(options.clone()),
            tracker: TaskTracker::new(),
            shutdown,
            hard_stop: CancellationToken::new(),
            drop_calls,
        }
    }

    /// After the accept loops have stopped: wait up to `grace` for the calls in flight, then
    /// drop the rest.
    async fn drain(&self, grace: Duration) {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = self.tracker.len(),
                "grace period over; dropping calls still in flight"
            );
            self.hard_stop.cancel();
            self.tracker.wait().await;
        }
    }
}

/// One worker thread of [`run_per_core`]: accept until shutdown, report that, then keep the
/// runtime turning until every call (of every worker) has finished or been dropped.
async fn worker(
    listeners: Vec<std::net::TcpListener>,
    ctx: Arc<Context>,
    shared: Shared,
    accepting_done: oneshot::Sender<()>,
) {
    let ticker = Arc::new(Ticker::default());
    tokio::spawn(keep_timer_armed(
        shared.shutdown.clone(),
        shared.tracker.clone(),
        ticker.clone(),
    ));
    let mut loops = Vec::new();
    for l in listeners {
        match TcpListener::from_std(l) {
            Ok(l) => loops.push(tokio::spawn(accept_loop(
                l,
                ctx.clone(),
                shared.clone(),
                ticker.clone(),
            ))),
            Err(error) => error!(%error, "cannot register a listener with a worker runtime"),
        }
    }
    shared.shutdown.cancelled().await;
    stop_accepting(loops).await;
    let _ = accepting_done.send(());
    tokio::select! {
        () = shared.tracker.wait() => {}
        // Returning ends `block_on`; the runtime, dropped with the thread, drops the calls
        // still on it (their sockets close, their permits and tracker entries go).
        () = shared.hard_stop.cancelled() => debug!("calls still on this worker dropped at shutdown"),
    }
}

/// Period of [`keep_timer_armed`]'s timer.
const TIMER_TICK: Duration = Duration::from_millis(100);
/// Ticks with at most one call in flight before [`keep_timer_armed`] sleeps until calls
/// overlap again.
const QUIET_TICKS: u32 = 10;

/// Whether a runtime's [`keep_timer_armed`] sleeps, and how to wake it.
#[derive(Debug, Default)]
struct Ticker {
    asleep: AtomicBool,
    wake: Notify,
}

impl Ticker {
    /// A call was accepted while `in_flight` others were running: re-arm the timer if it went
    /// to sleep and calls overlap. (A notification made before the ticker waits is kept for
    /// it, so none is lost.)
    fn call_accepted(&self, in_flight: usize) {
        if in_flight > 0 && self.asleep.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// Keeps a timer armed on this runtime while calls come in, until `shutdown`.
///
/// Each call sets deadlines (`tokio::time::timeout`). When a timer is added that expires
/// before every timer the runtime's driver knows of, tokio wakes the driver to recompute its
/// sleep: an `eventfd` write, one syscall per call that is not the socket's (measured with
/// `strace -c`, see BENCHMARKS.md). With this short ticker registered, the per-call deadlines
/// (hundreds of ms and up) are never the earliest, and arming them costs no syscall. The price
/// is ten wake-ups a second, worth it only while calls overlap: after a second with at most
/// one call in flight it sleeps until a call arrives while another runs. An idle server has no
/// timer ticking, and calls that come one at a time (a PBX's few a second) pay the one
/// `eventfd` write each rather than ten wake-ups a second (issue 18).
async fn keep_timer_armed(shutdown: CancellationToken, calls: TaskTracker, ticker: Arc<Ticker>) {
    loop {
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut quiet = 0;
        while quiet < QUIET_TICKS {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            quiet = if calls.len() <= 1 { quiet + 1 } else { 0 };
        }
        ticker.asleep.store(true, Ordering::Release);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = ticker.wake.notified() => {}
        }
    }
}

async fn join(threads: Vec<std::thread::JoinHandle<()>>) {
    let joined = tokio::task::spawn_blocking(move || {
        for t in threads {
            if t.join().is_err() {
                error!("a server worker thread panicked");
            }
        }
    })
    .await;
    if let Err(error) = joined {
        error!(%error, "cannot join the server worker threads");
    }
}

/// Aborts the accept loops (dropping their listeners: no new calls) and waits for them.
async fn stop_accepting(loops: Vec<tokio::task::JoinHandle<()>>) {
    for l in &loops {
        l.abort();
    }
    for l in loops {
        // Err: aborted, as asked (or a panic, already printed by the hook).
        let _ = l.await;
    }
}

/// Takes a permit, accepts, spawns the call; again, until its task is aborted at shutdown
/// ([`stop_accepting`]). Aborting it at either wait loses nothing: a connection is spawned
/// in the same poll that accepts it. (The loop does not race the shutdown token itself: that
/// cost a lock of the token's waiter list on each of its two waits per call.)
async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Context>,
    shared: Shared,
    ticker: Arc<Ticker>,
) {
    let nodelay = Nodelay::for_listener(&listener);
    let mut backoff = Duration::from_millis(5);
    loop {
        // The semaphore is never closed while the server runs.
        let Ok(permit) = shared.permits.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // EMFILE and friends: wait a little instead of spinning.
                error!(error = %e, ?backoff, "accept failed");
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        backoff = Duration::from_millis(5);
        if !shared.allowed.allows(peer.ip()) {
            // Closed before a byte is read: FastAGI has no authentication.
            drop(stream);
            drop(permit);
            ctx.metrics.refused();
            if let Admit::Log { left_out } = ctx
                .failures
                .admit(Some(peer.ip()), std::time::Instant::now())
            {
                warn!(%peer, more_from_peer_in_last_minute = left_out, "refused a connection from a client not in --allow-client");
            }
            continue;
        }
        ticker.call_accepted(shared.tracker.len());
        let ctx = ctx.clone();
        match shared.drop_calls {
            HardStop::WithRuntime => {
                shared.tracker.spawn(async move {
                    // The call's future is boxed: tokio copies a task's whole future several
                    // times while spawning, running and finishing it, and this keeps that small.
                    Box::pin(serve_one(stream, peer, nodelay, &ctx)).await;
                    drop(permit);
                });
            }
            HardStop::EachCall => {
                let hard_stop = shared.hard_stop.clone();
                shared.tracker.spawn(async move {
                    let call = Box::pin(serve_one(stream, peer, nodelay, &ctx));
                    tokio::select! {
                        // The call first: when it finishes on this poll, the hard-stop future
                        // is dropped without having been polled again.
                        biased;
                        _ = call => {}
                        _ = hard_stop.cancelled() => debug!(%peer, "call dropped at shutdown"),
                    }
                    drop(permit);
                });
            }
        }
    }
}

/// Whether the calls of a listener still have to set `TCP_NODELAY` themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nodelay {
    /// Set on the listening socket, and Linux copies it to every socket it accepts: a
    /// `setsockopt` fewer per call (issue 18).
    Inherited,
    /// Each call sets it (elsewhere than Linux, or when setting it on the listener failed).
    PerCall,
}

impl Nodelay {
    /// Sets `TCP_NODELAY` on `listener` (our writes are whole commands, each awaited: no
    /// reason to hold one back), and says whether its connections get it from there.
    fn for_listener(listener: &TcpListener) -> Nodelay {
        match socket2::SockRef::from(listener).set_tcp_nodelay(true) {
            Ok(()) if cfg!(target_os = "linux") => Nodelay::Inherited,
            Ok(()) => Nodelay::PerCall,
            Err(error) => {
                debug!(%error, "cannot set TCP_NODELAY on a listening socket; set per call");
                Nodelay::PerCall
            }
        }
    }
}

/// One call on `stream`.
async fn serve_one(mut stream: TcpStream, peer: SocketAddr, nodelay: Nodelay, ctx: &Context) {
    if nodelay == Nodelay::PerCall {
        let _ = stream.set_nodelay(true);
    }
    // Borrowed halves: no `Arc` per call (the connection does not outlive this function).
    let (r, w) = stream.split();
    let conn = AgiConnection::new(r, w, ctx.settings.limits);
    let outcome = session::run(conn, ctx, Some(peer)).await;
    debug!(%peer, ?outcome, "session done");
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::sync::Notify;

    use super::*;
    use crate::policy::{Builtins, Policy, SharedPolicy};
    use crate::ranges::{Rule, RuleKind, RuleSource};
    use crate::resolve::HostResolver;
    use crate::session::SessionSettings;

    fn context() -> Arc<Context> {
        context_with(SessionSettings::default())
    }

    fn context_with(settings: SessionSettings) -> Arc<Context> {
        let rule = Rule {
            id: 1,
            kind: RuleKind::Permit,
            range: "203.0.113.0/24".parse().expect("range"),
            country: "AA".into(),
            source: RuleSource::Custom,
            note: "office".into(),
            terms: Default::default(),
        };
        Arc::new(Context {
            policy: Arc::new(SharedPolicy::new(Policy::compile(
                None,
                vec![rule],
                Vec::new(),
                Builtins::On,
            ))),
            resolver: HostResolver::disabled(),
            settings,
            reload: Arc::new(Notify::new()),
            failures: Default::default(),
            metrics: Default::default(),
            alerts: None,
        })
    }

    const BLOCK: &[u8] = b"agi_network: yes\nagi_network_script: screen\nagi_uniqueid: 1.1\nagi_arg_1: 127.0.0.1:5060\nagi_arg_2: <sip:bob@203.0.113.7>\n\n";

    /// One call, waiting `pause` before answering each command. Returns the commands and
    /// whether the server closed.
    async fn call(addr: SocketAddr, pause: Duration) -> (Vec<String>, bool) {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(BLOCK).await.expect("block");
        let (r, mut w) = s.split();
        let mut lines = BufReader::new(r).lines();
        let mut commands = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await {
                Ok(Ok(Some(line))) => {
                    commands.push(line);
                    tokio::time::sleep(pause).await;
                    let _ = w.write_all(b"200 result=1\n").await;
                }
                Ok(Ok(None)) | Ok(Err(_)) => return (commands, true),
                Err(_) => return (commands, false),
            }
        }
    }

    /// The per-call `setsockopt` is skipped on the promise that accepted sockets inherit
    /// `TCP_NODELAY` from their listener: held to this kernel's behaviour.
    #[tokio::test]
    async fn accepted_sockets_inherit_nodelay_from_the_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let nodelay = Nodelay::for_listener(&listener);
        let client = TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        if cfg!(target_os = "linux") {
            assert_eq!(nodelay, Nodelay::Inherited);
            assert!(accepted.nodelay().expect("getsockopt"), "not inherited");
        } else {
            assert_eq!(nodelay, Nodelay::PerCall);
        }
        // A plain listener's sockets do not have it: the test can fail.
        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _c = TcpStream::connect(plain.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (other, _) = plain.accept().await.expect("accept");
        assert!(!other.nodelay().expect("getsockopt"));
        drop(client);
    }

    #[test]
    fn only_loopback_and_allowed_clients_are_taken() {
        let o = ServerOptions::default().allow_clients(["192.0.2.0/28".parse().expect("net")]);
        for (ip, taken) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("192.0.2.5", true),
            ("::ffff:192.0.2.5", true),
            ("192.0.2.16", false),
            ("198.51.100.9", false),
        ] {
            assert_eq!(o.allows(ip.parse().expect("ip")), taken, "{ip}");
        }
        assert!(!ServerOptions::default().allows("192.0.2.5".parse().expect("ip")));
    }

    #[test]
    fn options_out_of_range_are_refused() {
        assert!(ServerOptions::new(0, Duration::ZERO).is_err());
        assert!(ServerOptions::new(MAX_SESSIONS + 1, Duration::ZERO).is_err());
        assert!(ServerOptions::new(MAX_SESSIONS, Duration::ZERO).is_ok());
    }

    #[tokio::test]
    async fn per_core_workers_serve_and_drain_on_shutdown() {
        let per_worker = bind_per_worker(&["127.0.0.1:0".parse().expect("addr")], 2).expect("bind");
        let addr = per_worker[0][0].local_addr().expect("addr");
        assert_eq!(
            per_worker[1][0].local_addr().expect("addr"),
            addr,
            "one port"
        );
        let shutdown = CancellationToken::new();
        let options = ServerOptions::new(8, Duration::from_secs(3)).expect("options");
        let server = tokio::spawn(run_per_core(
            per_worker,
            context(),
            options,
            shutdown.clone(),
        ));
        let want = [
            "EXEC MSet \"STRANGER=false,IPCOUNTRY_VERDICT=permitted,IPCOUNTRY_REASON=permit #1 203.0.113.0/24 office\"",
        ];
        // Concurrent calls, spread over the two workers.
        let calls: Vec<_> = (0..16)
            .map(|_| tokio::spawn(call(addr, Duration::ZERO)))
            .collect();
        for c in calls {
            let (commands, closed) = c.await.expect("call task");
            assert_eq!(commands, want);
            assert!(closed);
        }
        // A slow call in flight when shutdown begins still gets its whole verdict.
        let slow = tokio::spawn(call(addr, Duration::from_millis(150)));
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.cancel();
        let (commands, closed) = slow.await.expect("slow call");
        assert_eq!(commands, want, "the call in flight is finished");
        assert!(closed);
        let stopped = tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the server stops within the grace period");
        assert!(stopped.expect("server task").is_ok());
        // Every worker's listener is closed: no new calls.
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no new calls after shutdown"
        );
    }

    #[tokio::test]
    async fn calls_still_running_after_the_grace_period_are_dropped() {
        // Asterisk would wait a minute for this reply: only the hard stop can end the call.
        let settings = SessionSettings {
            reply_timeout: Duration::from_secs(60),
            ..SessionSettings::default()
        };
        for per_core in [true, false] {
            let shutdown = CancellationToken::new();
            let options = ServerOptions::new(8, Duration::from_millis(200)).expect("options");
            let ctx = context_with(settings.clone());
            let (server, addr) = if per_core {
                let per_worker =
                    bind_per_worker(&["127.0.0.1:0".parse().expect("addr")], 1).expect("bind");
                let addr = per_worker[0][0].local_addr().expect("addr");
                let stop = shutdown.clone();
                let server = tokio::spawn(async move {
                    run_per_core(per_worker, ctx, options, stop)
                        .await
                        .expect("workers start");
                });
                (server, addr)
            } else {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("addr");
                (
                    tokio::spawn(run(vec![listener], ctx, options, shutdown.clone())),
                    addr,
                )
            };
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(BLOCK).await.expect("block");
            let mut lines = BufReader::new(s).lines();
            let command = lines.next_line().await.expect("read").expect("a command");
            assert!(command.starts_with("EXEC MSet"), "{command}");
            // The command is never answered.
            let began = std::time::Instant::now();
            shutdown.cancel();
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the server stops after the grace period")
                .expect("server task");
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "per_core {per_core}: {:?}",
                began.elapsed()
            );
            // The call was dropped: its socket is closed.
            let rest = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
                .await
                .expect("the socket is closed, not left open");
            assert!(
                matches!(rest, Ok(None) | Err(_)),
                "per_core {per_core}: {rest:?}"
            );
        }
    }
}
