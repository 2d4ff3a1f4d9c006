//! The accept loop: bounded concurrency, accept backoff, graceful drain.
//!
//! [`run`] takes its listeners, the shared [`Context`] and a shutdown token as arguments and
//! never binds a port itself (tests pass `127.0.0.1:0`). A semaphore permit is taken *before*
//! `accept`, so at most `max_sessions` calls run at once and further connections wait in the
//! kernel's backlog (backpressure) instead of piling up as tasks. On shutdown the listeners
//! close at once, calls in flight get `grace` to finish, then are dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::agi::connection::AgiConnection;
use crate::session::{self, Context};

/// Bounds of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Calls handled at once (default 1024).
    pub max_sessions: usize,
    /// How long calls in flight may take to finish after shutdown begins (default 5 s).
    pub grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_sessions: 1024,
            grace: Duration::from_secs(5),
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
    let permits = Arc::new(Semaphore::new(options.max_sessions.max(1)));
    let tracker = TaskTracker::new();
    // Cancelled when the grace period is over: sessions still running are dropped.
    let hard_stop = CancellationToken::new();
    let mut accept_loops = Vec::new();
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening on {addr}");
        }
        accept_loops.push(tokio::spawn(accept_loop(
            listener,
            ctx.clone(),
            permits.clone(),
            tracker.clone(),
            shutdown.clone(),
            hard_stop.clone(),
        )));
    }
    shutdown.cancelled().await;
    for l in accept_loops {
        let _ = l.await;
    }
    tracker.close();
    if tokio::time::timeout(options.grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tracker.len(),
            "grace period over; dropping calls still in flight"
        );
        hard_stop.cancel();
        tracker.wait().await;
    }
    info!("server stopped");
}

async fn accept_loop(
    listener: TcpListener,
    ctx: Arc<Context>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                // The semaphore is never closed while the server runs.
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    error!(error = %e, ?backoff, "accept failed");
                    drop(permit);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        backoff = Duration::from_millis(5);
        let ctx = ctx.clone();
        let hard_stop = hard_stop.clone();
        tracker.spawn(async move {
            tokio::select! {
                _ = serve_one(stream, peer, &ctx) => {}
                _ = hard_stop.cancelled() => debug!(%peer, "call dropped at shutdown"),
            }
            drop(permit);
        });
    }
}

async fn serve_one(stream: TcpStream, peer: SocketAddr, ctx: &Context) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    let conn = AgiConnection::new(r, w, ctx.settings.limits);
    match session::run(conn, ctx, Some(peer)).await {
        Ok(outcome) => debug!(%peer, ?outcome, "session done"),
        Err(error) => warn!(%peer, %error, "dropped AGI peer"),
    }
}
