//! `serve`, `agi` and `reload`: the commands that run or poke the screening server.

use super::{open_store, resolver};
use ipcountry::store::cache::SnapshotCache;
use ipcountry::store::{PoolSettings, Store};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::cli::{AgiArgs, Runtime, ServeArgs};
use ipcountry::agi::connection::{AgiConnection, Limits};
use ipcountry::agi::env::encode_block;
use ipcountry::alerts::{AlertSettings, Alerts};
use ipcountry::heartbeat::{self, Heartbeat};
use ipcountry::metrics::Metrics;
use ipcountry::policy::{Builtins, SharedPolicy};
use ipcountry::session::{Context, Outcome, SessionSettings};
use ipcountry::{fdlimit, reload, server, session, shutdown};

use crate::cli;

pub(crate) async fn serve(db: &str, builtins: Builtins, args: ServeArgs) -> Result<ExitCode> {
    if let Some(open) = args.listen.iter().find(|a| !a.ip().is_loopback()) {
        if args.allow_client.is_empty() {
            bail!(
                "listening on {open} needs --allow-client: FastAGI has no authentication, so \
                 name the Asterisk hosts that may connect (e.g. --allow-client 192.0.2.10/32)"
            );
        }
    }
    let options = server::ServerOptions::new(args.max_sessions, args.grace)?
        .allow_clients(args.allow_client.iter().copied());
    let workers = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => usize::from(n),
    };
    let needed = fdlimit::needed(args.max_sessions, args.listen.len() * workers);
    if let Some(raised) = fdlimit::ensure(needed)? {
        tracing::info!(
            from = raised.from,
            to = raised.to,
            "raised the open-files limit for --max-sessions {}",
            args.max_sessions
        );
    }
    let settings = PoolSettings {
        max_connections: args.store.db_pool,
        acquire_timeout: args.store.db_timeout,
    };
    let cache = args.store.snapshot_cache.clone().map(SnapshotCache::new);
    let Start {
        source,
        policy,
        cached_age,
        data,
    } = start_policy(db, &settings, cache.as_ref(), builtins).await?;
    let shared = Arc::new(match cached_age {
        None => SharedPolicy::new(policy),
        Some((age, loaded_at)) => SharedPolicy::from_cache(policy, age, loaded_at),
    });
    let inherited = inherited_listeners()?;
    let listeners = match (args.runtime, inherited) {
        // Socket activation (`contrib/ipcountry.socket`): systemd's sockets, whatever --listen
        // says; every worker accepts on them (one socket each cannot be had from systemd).
        (_, Some(sockets)) => {
            for s in &sockets {
                if let Ok(addr) = s.local_addr() {
                    if !addr.ip().is_loopback() && args.allow_client.is_empty() {
                        bail!("the socket unit listens on {addr}: that needs --allow-client");
                    }
                }
            }
            let mut per_worker = Vec::with_capacity(workers);
            for _ in 0..workers {
                per_worker.push(
                    sockets
                        .iter()
                        .map(std::net::TcpListener::try_clone)
                        .collect::<std::io::Result<Vec<_>>>()
                        .context("cannot share systemd's sockets with the workers")?,
                );
            }
            Listeners::PerWorker(per_worker)
        }
        (Runtime::MultiThread, None) => {
            let mut listeners = Vec::new();
            for addr in &args.listen {
                listeners.push(
                    TcpListener::bind(addr)
                        .await
                        .with_context(|| format!("cannot listen on {addr}"))?,
                );
            }
            Listeners::Shared(listeners)
        }
        (Runtime::PerCore, None) => Listeners::PerWorker(
            server::bind_per_worker(&args.listen, workers)
                .with_context(|| format!("cannot listen on {}", join_addrs(&args.listen)))?,
        ),
    };
    let shutdown = shutdown::on_signals().context("cannot install signal handlers")?;
    // `--firewall`: the kernel's table follows the snapshot, on a task of its own.
    let firewall_stats = Arc::new(ipcountry::firewall::keeper::KeeperStats::default());
    let firewall = args.firewall.then(|| {
        tokio::spawn(
            ipcountry::firewall::keeper::Keeper {
                shared: shared.clone(),
                ports: ipcountry::firewall::VoipPorts::new(args.kernel.voip_port.clone()),
                state_dir: args.kernel.state_dir.clone(),
                nft: Default::default(),
                stats: firewall_stats.clone(),
                shutdown: shutdown.clone(),
            }
            .run(),
        )
    });
    let notify = Arc::new(Notify::new());
    let resolver = resolver(&args.screen.dns);
    let alerts = args.on_stranger.clone().map(|command| {
        Alerts::start(
            AlertSettings {
                command,
                dedup: args.alert_dedup,
                per_minute: args.alert_rate,
                queue: ipcountry::alerts::QUEUE,
            },
            shutdown.clone(),
        )
    });
    let mut metrics = Metrics::new();
    metrics.watch(shared.clone(), resolver.clone(), alerts.clone());
    if args.firewall {
        metrics.firewall(firewall_stats);
    }
    let metrics = Arc::new(metrics);
    if let Some(addr) = args.metrics {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot serve the metrics on {addr}"))?;
        tokio::spawn(ipcountry::metrics::serve(
            listener,
            metrics.clone(),
            shared.clone(),
            args.healthz_max_age,
            shutdown.clone(),
        ));
    }
    // The knock page (issue 16), on a listener of its own when --knock is given.
    super::knock::start_page(
        &args.knock,
        ipcountry::knock::Parts {
            store: super::knock::share(&source),
            policy: shared.clone(),
            reload: notify.clone(),
            metrics: metrics.clone(),
            alerts: alerts.clone(),
        },
        shutdown.clone(),
    )
    .await?;
    let ctx = Arc::new(Context {
        policy: shared.clone(),
        resolver,
        settings: SessionSettings {
            trust: args.screen.trust.into(),
            limits: Limits::default(),
            env_timeout: args.env_timeout,
            reply_timeout: args.reply_timeout,
            reply: args.reply.into(),
            monitor: args.monitor,
        },
        reload: notify.clone(),
        failures: Default::default(),
        metrics,
        alerts,
    });
    let store = match &source {
        reload::Source::Open(store) => Some(store.clone()),
        reload::Source::Pending { .. } => None,
    };
    let heartbeat = tokio::spawn(
        Heartbeat {
            store: match &source {
                reload::Source::Open(store) => reload::Source::Open(store.clone()),
                reload::Source::Pending { url, settings } => reload::Source::Pending {
                    url: url.clone(),
                    settings: *settings,
                },
            },
            shared: shared.clone(),
            interval: args.heartbeat,
            check: args.poll,
            identity: heartbeat::identity(&listeners.addrs()),
            shutdown: shutdown.clone(),
        }
        .run(),
    );
    // Subscribed before the first call is taken, so no change made after that is missed.
    let changes = match &store {
        Some(store) => store.listen().await.unwrap_or_else(|error| {
            tracing::warn!(%error, "cannot listen for change announcements; polling only");
            None
        }),
        None => None,
    };
    let watcher = tokio::spawn(
        reload::Watcher {
            store: source,
            changes,
            shared,
            builtins,
            poll: args.poll,
            cache,
            notify,
            shutdown: shutdown.clone(),
            data,
        }
        .run(),
    );
    notify_ready();
    match listeners {
        Listeners::Shared(listeners) => server::run(listeners, ctx, options, shutdown).await,
        Listeners::PerWorker(per_worker) => {
            if let Err(e) = server::run_per_core(per_worker, ctx, options, shutdown.clone()).await {
                // Stop the reload watcher too before reporting.
                shutdown.cancel();
                let _ = watcher.await;
                let _ = heartbeat.await;
                return Err(e).context("cannot start the server workers");
            }
        }
    }
    let _ = watcher.await;
    if let Some(firewall) = firewall {
        let _ = firewall.await;
    }
    // Deletes this server's row (bounded by a short timeout) before the pool closes.
    let _ = heartbeat.await;
    if let Some(store) = store {
        store.close().await;
    }
    Ok(ExitCode::SUCCESS)
}
/// The sockets systemd passed (`LISTEN_FDS`, socket activation), non-blocking; `None` when
/// it passed none.
fn inherited_listeners() -> Result<Option<Vec<std::net::TcpListener>>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let mut sockets = Vec::new();
    for i in 0..fds.len() {
        let socket = fds
            .take_tcp_listener(i)
            .with_context(|| format!("socket {i} from systemd is not a TCP listener"))?;
        if let Some(socket) = socket {
            socket.set_nonblocking(true)?;
            tracing::info!(addr = ?socket.local_addr().ok(), "using a socket from systemd");
            sockets.push(socket);
        }
    }
    Ok(Some(sockets))
}

/// Tells systemd (`Type=notify`) the server is ready: the snapshot is loaded and the sockets
/// are open. Does nothing when not started by systemd.
fn notify_ready() {
    if let Err(error) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!(%error, "cannot tell systemd the server is ready");
    }
}

/// The store and the first snapshot: read from the database; or, when the database cannot be
/// reached and a snapshot cache from an earlier run exists, the cached snapshot (said in the
/// log), the store to be opened when the database answers. Without either, `serve` refuses to
/// start: it has nothing to screen with.
async fn start_policy(
    db: &str,
    settings: &PoolSettings,
    cache: Option<&SnapshotCache>,
    builtins: Builtins,
) -> Result<Start> {
    let shown = cli::db_display(db);
    let error = match Store::open_with(db, settings).await {
        Ok(store) => {
            // E.g. more rules than a snapshot holds (reload::ReloadError::Table): refuse to start.
            let data = store
                .load_policy()
                .await
                .context("cannot load the tables; the server does not start without them")?;
            let loaded_at = ipcountry::store::cache::now();
            let (policy, data) = reload::compile(data, builtins)
                .await
                .context("cannot load the tables; the server does not start without them")?;
            let data = match cache {
                Some(cache) => reload::write_cache(cache, data, store.url(), loaded_at).await,
                None => Some(data),
            };
            let (v4, v6) = policy.table().segment_counts();
            tracing::info!(db = %shown.display(), generation = policy.generation(), v4_segments = v4, v6_segments = v6, "policy loaded");
            let data = data.and_then(|data| reload::kept_for_expiry(&policy, data));
            return Ok(Start {
                source: reload::Source::Open(store),
                policy,
                cached_age: None,
                data,
            });
        }
        Err(e) if e.is_unreachable() => e,
        Err(e) => return Err(e.into()),
    };
    let Some(cache) = cache else {
        return Err(anyhow::Error::new(error).context(
            "the server does not start without its tables (no --snapshot-cache to fall back on)",
        ));
    };
    let read = {
        let cache = cache.clone();
        tokio::task::spawn_blocking(move || cache.read()).await?
    };
    let cached = match read {
        Ok(cached) => cached,
        Err(cache_error) => {
            return Err(anyhow::Error::new(error).context(format!(
                "the server does not start without its tables, and has no snapshot to fall back on ({cache_error})"
            )));
        }
    };
    let (policy, data) = reload::compile(cached.data, builtins)
        .await
        .context("cannot compile the cached snapshot")?;
    tracing::warn!(
        db = %shown.display(),
        %error,
        cache = %cache.path().display(),
        generation = policy.generation(),
        loaded = %ipcountry::store::cache::age(cached.loaded_at),
        "database unreachable at start: serving the snapshot cache until it answers"
    );
    let source = reload::Source::Pending {
        url: db.to_owned(),
        settings: *settings,
    };
    // Its age counts from when a server last found it current, not from now.
    let age = cached.confirmed_at.elapsed().unwrap_or_default();
    let data = reload::kept_for_expiry(&policy, data);
    Ok(Start {
        source,
        policy,
        cached_age: Some((age, cached.loaded_at)),
        data,
    })
}

/// What `serve` starts with.
struct Start {
    source: reload::Source,
    policy: ipcountry::policy::Policy,
    /// How long ago the snapshot was last confirmed, and when it was read from the database
    /// (Unix seconds), when it came from the cache.
    cached_age: Option<(Duration, i64)>,
    /// The data behind the snapshot, when entries in it expire later.
    data: Option<ipcountry::store::PolicyData>,
}

/// The listening sockets: for tokio's multi-thread runtime, or one set per worker thread.
enum Listeners {
    Shared(Vec<TcpListener>),
    PerWorker(Vec<Vec<std::net::TcpListener>>),
}

impl Listeners {
    /// The addresses listened on, as bound (port 0 resolved), each once.
    fn addrs(&self) -> Vec<SocketAddr> {
        let bound: Vec<SocketAddr> = match self {
            Listeners::Shared(listeners) => listeners
                .iter()
                .filter_map(|l| l.local_addr().ok())
                .collect(),
            Listeners::PerWorker(per_worker) => per_worker
                .first()
                .into_iter()
                .flatten()
                .filter_map(|l| l.local_addr().ok())
                .collect(),
        };
        let mut addrs = Vec::with_capacity(bound.len());
        for addr in bound {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }
}

fn join_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Plain AGI: one call over stdin/stdout, its arguments from the command line. Exit 0 when
/// the call was answered (whatever the verdict: the dialplan reads `STRANGER`), 2 when it
/// could not be.
pub(crate) async fn agi(db: &str, builtins: Builtins, args: AgiArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
    store.close().await;
    let ctx = Context {
        policy: Arc::new(SharedPolicy::new(policy)),
        resolver: resolver(&args.screen.dns),
        settings: SessionSettings {
            trust: args.screen.trust.into(),
            ..SessionSettings::default()
        },
        reload: Arc::new(Notify::new()),
        failures: Default::default(),
        metrics: Default::default(),
        alerts: None,
    };
    let conn = AgiConnection::new(tokio::io::stdin(), tokio::io::stdout(), Limits::default());
    match session::run_stdio(conn, &ctx, &args.call).await {
        Outcome::Screened | Outcome::Failed | Outcome::HungUp => Ok(ExitCode::SUCCESS),
        other => bail!("the call was not answered ({other:?})"),
    }
}
/// Bumps the store's generation (every server sharing the database reloads at its next poll)
/// and asks the server at `server` to reload now, over FastAGI (`agi://server/reload`).
pub(crate) async fn reload_cmd(db: &str, server: SocketAddr) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let generation = store.bump_generation().await?;
    store.close().await;
    outln!("generation is now {generation}: servers sharing this database reload within their poll interval");
    match poke(server).await {
        Ok(()) => {
            outln!("{server} reloads now");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            outln!("no server answered at {server} ({e:#})");
            Ok(ExitCode::from(1))
        }
    }
}
/// Plays Asterisk for one `reload` call: sends the environment block, answers the server's
/// acknowledgement (`VERBOSE`), and waits for it to close.
pub(crate) async fn poke(server: SocketAddr) -> Result<()> {
    let deadline = std::time::Duration::from_secs(2);
    let connect = tokio::net::TcpStream::connect(server);
    let mut stream = tokio::time::timeout(deadline, connect).await??;
    let request = format!("agi://{server}/reload");
    let block = encode_block(&[
        ("network", "yes"),
        ("network_script", "reload"),
        ("request", &request),
    ])?;
    stream.write_all(&block).await?;
    let (r, mut w) = stream.split();
    let mut line = String::new();
    let mut reader = BufReader::new(r);
    tokio::time::timeout(deadline, reader.read_line(&mut line)).await??;
    if !line.starts_with("VERBOSE ") {
        bail!("the server did not take the reload: {}", line.trim_end());
    }
    w.write_all(b"200 result=1\n").await?;
    // The server closes once it has its reply.
    let mut rest = String::new();
    if tokio::time::timeout(deadline, reader.read_line(&mut rest)).await?? != 0 {
        bail!("unexpected command from the server: {}", rest.trim_end());
    }
    Ok(())
}
