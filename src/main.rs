//! The `ipcountry` binary: parse the command line, set up tracing, run one command, and map
//! the outcome to an exit code (0 ok / permitted, 1 denied, stranger or refused, 2 error).
//! `anyhow` lives here and in `cli.rs` only; the library returns typed errors.

mod cli;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use cli::{CheckArgs, Cli, Command, HostAction, RuleAction, Runtime, ScreenArgs, ServeArgs};
use ipcountry::agi::connection::{AgiConnection, Limits};
use ipcountry::decision::{self, Verdict};
use ipcountry::hosts::HostPattern;
use ipcountry::policy::{Builtins, SharedPolicy};
use ipcountry::ranges::{IpRange, Rule, RuleKind, RuleSource, CUSTOM_COUNTRY};
use ipcountry::request::ScreenRequest;
use ipcountry::resolve::HostResolver;
use ipcountry::session::{Context, SessionSettings};
use ipcountry::store::{Store, StoreError};
use ipcountry::{reload, server, session, shutdown};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    // `serve --runtime per-core` (the default) starts its own single-threaded worker runtimes
    // (server::run_per_core); the main thread then only needs a current-thread runtime for
    // signals, reloads and the store. Everything else runs on tokio's multi-thread runtime.
    let mut builder = match &cli.command {
        Command::Serve(args) if args.runtime == Runtime::PerCore => {
            tokio::runtime::Builder::new_current_thread()
        }
        Command::Serve(args) if args.threads > 0 => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(args.threads);
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipcountry: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipcountry: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr (stdout is the AGI channel in `agi` mode); `RUST_LOG` sets the level.
fn init_tracing(command: &Command) {
    let default = match command {
        Command::Serve(_) | Command::Agi(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let builtins = if cli.no_builtins {
        Builtins::Off
    } else {
        Builtins::On
    };
    match cli.command {
        Command::Serve(args) => serve(&cli.db, builtins, args).await,
        Command::Agi(args) => agi(&cli.db, builtins, args).await,
        Command::Check(args) => check(&cli.db, builtins, cli.json, args).await,
        Command::Ip { values } => ip(&values, cli.json),
        Command::Permit { action } => rules(&cli.db, RuleKind::Permit, action, cli.json).await,
        Command::Deny { action } => rules(&cli.db, RuleKind::Deny, action, cli.json).await,
        Command::AllowHost { action } => hosts(&cli.db, action, cli.json).await,
        Command::Reload { server } => reload_cmd(&cli.db, server).await,
    }
}

async fn open_store(db: &str) -> Result<Store> {
    Store::open(db)
        .await
        .with_context(|| format!("cannot open database {}", cli::db_display(db).display()))
}

fn resolver(args_timeout: std::time::Duration, server: Option<SocketAddr>) -> HostResolver {
    match server {
        Some(s) => HostResolver::with_nameserver(s, args_timeout),
        None => HostResolver::system(args_timeout),
    }
}

async fn serve(db: &str, builtins: Builtins, args: ServeArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
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
        resolver: resolver(args.screen.dns_timeout, args.screen.dns_server),
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

async fn agi(db: &str, builtins: Builtins, args: ScreenArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
    store.close().await;
    let ctx = Context {
        policy: Arc::new(SharedPolicy::new(policy)),
        resolver: resolver(args.dns_timeout, args.dns_server),
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

async fn check(db: &str, builtins: Builtins, json: bool, args: CheckArgs) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot load the tables")?;
    store.close().await;
    let request = ScreenRequest::new(&args.subject, args.source.as_deref());
    let dns = match decision::host_to_resolve(&policy, &request, args.trust) {
        Some(name) => Some(
            resolver(args.dns_timeout, args.dns_server)
                .lookup(name)
                .await,
        ),
        None => None,
    };
    let d = decision::decide(&policy, &request, args.trust, dns.as_ref());
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        println!("{} ({})", d.verdict, d.reason);
        if d.checks.len() > 1 {
            for c in &d.checks {
                println!("  {:?} {}: {} ({})", c.role, c.subject, c.verdict, c.reason);
            }
        }
    }
    Ok(if d.verdict == Verdict::Permit {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn ip(values: &[String], json: bool) -> Result<ExitCode> {
    #[derive(Serialize)]
    struct Out {
        input: String,
        address: String,
        integer: String,
        family: u8,
    }
    let mut out = Vec::new();
    for v in values {
        let v = v.trim();
        let (addr, int, family) = if let Ok(ip) = v.parse::<IpAddr>() {
            match ip.to_canonical() {
                IpAddr::V4(a) => (a.to_string(), u32::from(a).to_string(), 4),
                IpAddr::V6(a) => (a.to_string(), u128::from(a).to_string(), 6),
            }
        } else if let Ok(n) = v.parse::<u128>() {
            match u32::try_from(n) {
                Ok(n4) => (Ipv4Addr::from(n4).to_string(), n.to_string(), 4),
                Err(_) => (Ipv6Addr::from(n).to_string(), n.to_string(), 6),
            }
        } else {
            bail!("not an IP address or integer: {v:?}");
        };
        out.push(Out {
            input: v.to_owned(),
            address: addr,
            integer: int,
            family,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for o in &out {
            if o.input == o.integer {
                println!("{}", o.address);
            } else {
                println!("{}", o.integer);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_range(words: &[String]) -> Result<IpRange> {
    match words {
        [one] => one.parse::<IpRange>().map_err(Into::into),
        [a, b] => IpRange::from_integers(a, b)
            .or_else(|_| {
                IpRange::from_addrs(a.trim().parse()?, b.trim().parse()?)
                    .map_err(anyhow::Error::from)
            })
            .with_context(|| format!("not a range: {a} {b}")),
        _ => bail!("give one range, or two integers"),
    }
}

async fn rules(db: &str, kind: RuleKind, action: RuleAction, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let code = match action {
        RuleAction::Add { range, note } => {
            let range = parse_range(&range)?;
            match store
                .add_rule(kind, range, CUSTOM_COUNTRY, RuleSource::Custom, note.trim())
                .await
            {
                Ok(rule) => {
                    print_rules(std::slice::from_ref(&rule), json, Some("added"))?;
                    ExitCode::SUCCESS
                }
                Err(e @ StoreError::Duplicate { .. }) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
                Err(e) => return Err(e.into()),
            }
        }
        RuleAction::Rm { what } => {
            let w = what.trim().trim_start_matches('#');
            let removed = match w.parse::<i64>() {
                Ok(id) if !w.contains('.') && !w.contains(':') && id < (1 << 31) => {
                    store.remove_rule(kind, id).await
                }
                _ => {
                    store
                        .remove_rule_by_range(kind, w.parse::<IpRange>()?)
                        .await
                }
            };
            match removed {
                Ok(rule) => {
                    print_rules(std::slice::from_ref(&rule), json, Some("removed"))?;
                    ExitCode::SUCCESS
                }
                Err(e @ StoreError::NotFound { .. }) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
                Err(e) => return Err(e.into()),
            }
        }
        RuleAction::List => {
            print_rules(&store.list_rules(kind).await?, json, None)?;
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

fn print_rules(rules: &[Rule], json: bool, verb: Option<&str>) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rules)?);
        return Ok(());
    }
    for r in rules {
        let note = if r.note.is_empty() {
            String::new()
        } else {
            format!(" {:?}", r.note)
        };
        let line = format!(
            "#{:<6} {:<43} {:<2} {:<7}{}",
            r.id,
            r.range.to_string(),
            r.country,
            r.source,
            note
        );
        match verb {
            Some(v) => println!("{v} {}: {}", r.kind, line.trim_end()),
            None => println!("{}", line.trim_end()),
        }
    }
    Ok(())
}

async fn hosts(db: &str, action: HostAction, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let code = match action {
        HostAction::Add { pattern, note } => {
            let p = HostPattern::parse(&pattern).with_context(|| format!("{pattern:?}"))?;
            match store.add_allow_host(p.as_str(), note.trim()).await {
                Ok(h) => {
                    if json {
                        println!("{}", serde_json::to_string_pretty(&h)?);
                    } else {
                        println!("added allow-host: #{} {}", h.id, h.pattern);
                    }
                    ExitCode::SUCCESS
                }
                Err(e @ StoreError::DuplicateHost { .. }) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
                Err(e) => return Err(e.into()),
            }
        }
        HostAction::Rm { what } => match store.remove_allow_host(what.trim()).await {
            Ok(h) => {
                println!("removed allow-host: #{} {}", h.id, h.pattern);
                ExitCode::SUCCESS
            }
            Err(e @ StoreError::NotFound { .. }) => {
                eprintln!("{e}");
                ExitCode::from(1)
            }
            Err(e) => return Err(e.into()),
        },
        HostAction::List => {
            let list = store.list_allow_hosts().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for h in &list {
                    let note = if h.note.is_empty() {
                        String::new()
                    } else {
                        format!(" {:?}", h.note)
                    };
                    println!("#{:<6} {}{}", h.id, h.pattern, note);
                }
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// Bumps the store's generation (every server sharing the database reloads at its next poll)
/// and asks the server at `server` to reload now, over FastAGI (`agi://server/reload`).
async fn reload_cmd(db: &str, server: SocketAddr) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let generation = store.bump_generation().await?;
    store.close().await;
    println!("generation is now {generation}: servers sharing this database reload within their poll interval");
    match poke(server).await {
        Ok(()) => println!("{server} reloads now"),
        Err(e) => println!("no server answered at {server} ({e:#})"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn poke(server: SocketAddr) -> Result<()> {
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
