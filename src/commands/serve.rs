//! `serve`, `agi` and `reload`: the commands that run or poke the screening server.

use super::{open_store, resolver};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::cli::{Runtime, ScreenArgs, ServeArgs};
use ipcountry::agi::connection::{AgiConnection, Limits};
use ipcountry::policy::{Builtins, SharedPolicy};
use ipcountry::session::{Context, SessionSettings};
use ipcountry::{reload, server, session, shutdown};

use crate::cli;

pub(crate) async fn serve(db: &str, builtins: Builtins, args: ServeArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    // E.g. more rules than a snapshot holds (reload::ReloadError::Table): refuse to start.
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables; the server does not start without them")?;
    let (v4, v6) = policy.table().segment_counts();
    tracing::info!(db = %cli::db_display(db).display(), generation = policy.generation(), v4_segments = v4, v6_segments = v6, "policy loaded");
    let shared = Arc::new(SharedPolicy::new(policy));
    let mut listeners = Vec::new();
    for addr in &args.listen {
        listeners.push(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?,
        );
    }
    let shutdown = shutdown::on_signals().context("cannot install signal handlers")?;
    let notify = Arc::new(Notify::new());
    let ctx = Arc::new(Context {
        policy: shared.clone(),
        resolver: resolver(&args.screen.dns),
        settings: SessionSettings {
            trust: args.screen.trust,
            limits: Limits::default(),
            env_timeout: args.env_timeout,
            reply_timeout: args.reply_timeout,
            reply: args.reply,
        },
        reload: notify.clone(),
    });
    let watcher = tokio::spawn(reload::watch(
        store.clone(),
        shared,
        builtins,
        args.poll,
        notify,
        shutdown.clone(),
    ));
    let options = server::ServerOptions {
        max_sessions: args.max_sessions,
        grace: args.grace,
    };
    match args.runtime {
        Runtime::MultiThread => server::run(listeners, ctx, options, shutdown).await,
        Runtime::PerCore => {
            let workers = match args.threads {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            };
            let listeners = listeners
                .into_iter()
                .map(TcpListener::into_std)
                .collect::<std::io::Result<Vec<_>>>()
                .context("cannot hand the listening sockets to the workers")?;
            if let Err(e) =
                server::run_per_core(listeners, workers, ctx, options, shutdown.clone()).await
            {
                // Stop the reload watcher too before reporting.
                shutdown.cancel();
                let _ = watcher.await;
                return Err(e).context("cannot start the server workers");
            }
        }
    }
    let _ = watcher.await;
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
pub(crate) async fn agi(db: &str, builtins: Builtins, args: ScreenArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
    store.close().await;
    let ctx = Context {
        policy: Arc::new(SharedPolicy::new(policy)),
        resolver: resolver(&args.dns),
        settings: SessionSettings {
            trust: args.trust,
            ..SessionSettings::default()
        },
        reload: Arc::new(Notify::new()),
    };
    let conn = AgiConnection::new(tokio::io::stdin(), tokio::io::stdout(), Limits::default());
    session::run_stdio(conn, &ctx).await?;
    Ok(ExitCode::SUCCESS)
}
/// Bumps the store's generation (every server sharing the database reloads at its next poll)
/// and asks the server at `server` to reload now, over FastAGI (`agi://server/reload`).
pub(crate) async fn reload_cmd(db: &str, server: SocketAddr) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let generation = store.bump_generation().await?;
    store.close().await;
    outln!("generation is now {generation}: servers sharing this database reload within their poll interval");
    match poke(server).await {
        Ok(()) => outln!("{server} reloads now"),
        Err(e) => outln!("no server answered at {server} ({e:#})"),
    }
    Ok(ExitCode::SUCCESS)
}
pub(crate) async fn poke(server: SocketAddr) -> Result<()> {
    let connect = tokio::net::TcpStream::connect(server);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(2), connect).await??;
    let block = format!(
        "agi_network: yes\nagi_network_script: reload\nagi_request: agi://{server}/reload\n\n"
    );
    stream.write_all(block.as_bytes()).await?;
    // The server closes once the request is taken.
    let mut line = String::new();
    let mut reader = BufReader::new(stream);
    tokio::time::timeout(
        std::time::Duration::from_secs(2),
        reader.read_line(&mut line),
    )
    .await??;
    Ok(())
}
