//! The `ipcountry` binary: parse the command line, set up tracing, run one command, and map
//! the outcome to an exit code (0 ok / permitted, 1 denied, stranger or refused, 2 error).
//! `anyhow` lives here and in `cli.rs` only; the library returns typed errors.

mod cli;

use std::io::IsTerminal as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use cli::{
    CheckArgs, Cli, Command, CountryAction, CountryFieldArg, HostAction, ImportArgs, RuleAction,
    ScreenArgs, ServeArgs,
};
use ipcountry::agi::connection::{AgiConnection, Limits};
use ipcountry::decision::{self, Verdict};
use ipcountry::hosts::HostPattern;
use ipcountry::import::{Catalog, CountryField, Format, ImportOptions};
use ipcountry::policy::{Builtins, SharedPolicy};
use ipcountry::ranges::{IpRange, Rule, RuleKind, RuleSource, CUSTOM_COUNTRY};
use ipcountry::request::ScreenRequest;
use ipcountry::resolve::HostResolver;
use ipcountry::session::{Context, SessionSettings};
use ipcountry::store::{CountryDiff, ImportSummary, Store, StoreError};
use ipcountry::{reload, server, session, shutdown};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.command);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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
    // sqlx warns about every statement slower than 1 s; reading a permit table of 100,000+
    // country rules takes about that long and is expected, so only its errors are shown
    // unless RUST_LOG asks for more.
    let default = format!("{default},sqlx::query=error");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
        Command::Permit { action } => {
            rules(&cli.db, RuleKind::Permit, action, cli.json, builtins).await
        }
        Command::Deny { action } => {
            rules(&cli.db, RuleKind::Deny, action, cli.json, builtins).await
        }
        Command::AllowHost { action } => hosts(&cli.db, action, cli.json).await,
        Command::Import(args) => import(&cli.db, args, cli.json).await,
        Command::Countries => countries(&cli.db, cli.json).await,
        Command::Country { action } => country(&cli.db, action, cli.json).await,
        Command::Refresh { import, dry_run } => refresh(&cli.db, import, dry_run, cli.json).await,
        Command::Status => status(&cli.db, builtins, cli.json).await,
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
    server::run(listeners, ctx, options, shutdown).await;
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

async fn rules(
    db: &str,
    kind: RuleKind,
    action: RuleAction,
    json: bool,
    builtins: Builtins,
) -> Result<ExitCode> {
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
            let mut list = store.list_rules(kind).await?;
            // The built-in permits are part of the policy too: list them, marked `builtin`.
            if kind == RuleKind::Permit && builtins == Builtins::On {
                list.extend(ipcountry::ranges::builtin::rules());
            }
            print_rules(&list, json, None)?;
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
        let id = match r.source {
            RuleSource::Builtin => "-".to_owned(),
            _ => format!("#{}", r.id),
        };
        let line = format!(
            "{id:<7} {:<43} {:<2} {:<7}{}",
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

/// Reads the catalog files off the async runtime; returns the catalog and the time it took.
async fn read_files(args: &ImportArgs) -> Result<(Catalog, Duration)> {
    let opts = ImportOptions {
        country_field: match args.country_field {
            CountryFieldArg::Country => CountryField::Country,
            CountryFieldArg::Registered => CountryField::Registered,
            CountryFieldArg::CountryThenRegistered => CountryField::CountryThenRegistered,
        },
        progress: std::io::stderr().is_terminal(),
    };
    let paths = args.files.clone();
    let started = Instant::now();
    let catalog = tokio::task::spawn_blocking(move || ipcountry::import::read(&paths, &opts))
        .await
        .context("the catalog reader task failed")??;
    Ok((catalog, started.elapsed()))
}

/// A spinner on stderr while the store works, when stderr is a terminal; hidden otherwise.
fn spinner(message: &'static str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(message);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// A human description of a catalog format.
fn describe_format(format: Format) -> &'static str {
    match format {
        Format::MmdbGeoIp2 => "MaxMind DB, GeoIP2/GeoLite2 Country schema",
        Format::MmdbCountryCode => "MaxMind DB, ip-location-db schema (country_code)",
        Format::GeoLite2Csv => "GeoLite2 CSV (Blocks + Locations)",
        Format::RangeCsv => "range CSV (start,end,country_code)",
        _ => "other",
    }
}

/// Store refusals (exit 1) versus errors (exit 2).
fn refused(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::UnknownCountries { .. }
            | StoreError::MissingCountries { .. }
            | StoreError::NoCatalog
    )
}

/// What `import` and `refresh` print in `--json` mode besides the store's report.
#[derive(Serialize)]
struct ReadInfo<'a> {
    files: &'a [PathBuf],
    format: Format,
    database_type: Option<&'a str>,
    built_at: Option<i64>,
    networks: u64,
    read_seconds: f64,
    store_seconds: f64,
}

impl<'a> ReadInfo<'a> {
    fn new(catalog: &'a Catalog, read: Duration, store: Duration) -> Self {
        ReadInfo {
            files: &catalog.source,
            format: catalog.format,
            database_type: catalog.database_type.as_deref(),
            built_at: catalog.built_at,
            networks: catalog.networks,
            read_seconds: read.as_secs_f64(),
            store_seconds: store.as_secs_f64(),
        }
    }

    fn print(&self) {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        println!("format: {}", describe_format(self.format));
        if let Some(t) = self.database_type {
            println!("database type: {t}");
        }
        if let Some(b) = self.built_at {
            println!("built: {}", utc(b));
        }
        println!(
            "read {} networks from {} in {:.2} s",
            thousands(self.networks),
            files.join(", "),
            self.read_seconds
        );
    }
}

async fn import(db: &str, args: ImportArgs, json: bool) -> Result<ExitCode> {
    let (catalog, read) = read_files(&args).await?;
    let store = open_store(db).await?;
    let started = Instant::now();
    let spin = spinner("storing the catalog (one transaction)");
    let result = store.import_catalog(&catalog).await;
    spin.finish_and_clear();
    let stored = started.elapsed();
    store.close().await;
    let summary = match result {
        Ok(s) => s,
        Err(e) if refused(&e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let info = ReadInfo::new(&catalog, read, stored);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            read: ReadInfo<'a>,
            summary: ImportSummary,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Out {
                read: info,
                summary
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    info.print();
    print_summary(&summary, stored);
    if summary.regenerated.is_empty() {
        println!("no country is permitted yet: `ipcountry countries`, then `ipcountry country add CC...`");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &ImportSummary, stored: Duration) {
    println!(
        "catalog: {} countries, {} IPv4 + {} IPv6 ranges, stored in {:.2} s",
        s.countries,
        thousands(s.v4_ranges),
        thousands(s.v6_ranges),
        stored.as_secs_f64()
    );
    if !s.regenerated.is_empty() {
        println!(
            "permitted countries {}: geolite rules {} -> {}",
            s.regenerated.join(" "),
            thousands(s.geolite_before),
            thousands(s.geolite_after)
        );
    }
    if s.identical_kept > 0 {
        println!(
            "{} range(s) already had an identical permit rule, which is kept",
            s.identical_kept
        );
    }
    println!("generation {}", s.generation);
}

async fn refresh(db: &str, args: ImportArgs, dry_run: bool, json: bool) -> Result<ExitCode> {
    let (catalog, read) = read_files(&args).await?;
    let store = open_store(db).await?;
    let started = Instant::now();
    let spin = spinner(if dry_run {
        "computing the refresh (one transaction, rolled back)"
    } else {
        "refreshing (one transaction)"
    });
    let result = store.refresh(&catalog, dry_run).await;
    spin.finish_and_clear();
    let stored = started.elapsed();
    store.close().await;
    let report = match result {
        Ok(r) => r,
        Err(e) if refused(&e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    let info = ReadInfo::new(&catalog, read, stored);
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            #[serde(flatten)]
            read: ReadInfo<'a>,
            #[serde(flatten)]
            report: &'a ipcountry::store::RefreshReport,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Out {
                read: info,
                report: &report
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    info.print();
    let (permitted, others): (Vec<&CountryDiff>, Vec<&CountryDiff>) =
        report.countries.iter().partition(|c| c.permitted);
    for c in &permitted {
        println!(
            "{} {:<24} ranges {} -> {} (+{} -{}), geolite rules {} -> {}",
            c.code,
            truncate(&c.name, 24),
            thousands(c.ranges_before),
            thousands(c.ranges_after),
            thousands(c.ranges_added),
            thousands(c.ranges_removed),
            thousands(c.rules_before),
            thousands(c.rules_after)
        );
        for r in &c.identical {
            println!("   kept {r} (identical to a {} range)", c.code);
        }
        for r in &c.custom_inside {
            println!("   {r} lies inside a {} range (redundant, kept)", c.code);
        }
        for r in &c.custom_overlapping {
            println!("   {r} overlaps {} ranges (kept)", c.code);
        }
    }
    if !others.is_empty() {
        let added: u64 = others.iter().map(|c| c.ranges_added).sum();
        let removed: u64 = others.iter().map(|c| c.ranges_removed).sum();
        let codes: Vec<&str> = others.iter().map(|c| c.code.as_str()).collect();
        let shown = if codes.len() > 20 {
            format!("{} ...", codes[..20].join(" "))
        } else {
            codes.join(" ")
        };
        println!(
            "{} countries not permitted changed (+{} -{} ranges): {shown}",
            others.len(),
            thousands(added),
            thousands(removed)
        );
    }
    print_summary(&report.summary, stored);
    if dry_run {
        println!("dry run: nothing was changed");
    } else {
        println!("custom permit entries and the deny table were not touched");
    }
    Ok(ExitCode::SUCCESS)
}

async fn countries(db: &str, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let rows = store.countries().await?;
    store.close().await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no country catalog imported yet (ipcountry import FILE)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("CC {:<32} {:>9} {:>9}  PERMITTED", "NAME", "IPv4", "IPv6");
    for c in &rows {
        let permitted = if c.permitted {
            format!("yes ({} rules)", thousands(c.rules))
        } else {
            "no".to_owned()
        };
        println!(
            "{} {:<32} {:>9} {:>9}  {permitted}",
            c.code,
            truncate(&c.name, 32),
            thousands(c.v4_ranges),
            thousands(c.v6_ranges)
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn country(db: &str, action: CountryAction, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let outcome = match action {
        CountryAction::Add { codes } => match store.permit_countries(&codes).await {
            Ok(report) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    for c in &report.added {
                        println!(
                            "permitted {}{}: {} geolite rules",
                            c.code,
                            named(&c.name),
                            thousands(c.rules)
                        );
                        for r in &c.identical {
                            println!("   kept {r} (identical to a {} range)", c.code);
                        }
                    }
                    if !report.already.is_empty() {
                        println!("already permitted: {}", report.already.join(" "));
                    }
                    if let Some(g) = report.generation {
                        println!("generation {g}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e),
        },
        CountryAction::Rm { codes } => match store.unpermit_countries(&codes).await {
            Ok(report) => {
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    for c in &report.removed {
                        println!(
                            "no longer permitted: {}{} ({} geolite rules removed)",
                            c.code,
                            named(&c.name),
                            thousands(c.rules)
                        );
                    }
                    if !report.not_permitted.is_empty() {
                        println!("not permitted: {}", report.not_permitted.join(" "));
                    }
                    if let Some(g) = report.generation {
                        println!("generation {g}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => Err(e),
        },
    };
    store.close().await;
    match outcome {
        Ok(code) => Ok(code),
        Err(e) if refused(&e) => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

async fn status(db: &str, builtins: Builtins, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let st = store.catalog_status().await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot compile the tables")?;
    store.close().await;
    let table = policy.table();
    let (v4_segments, v6_segments) = table.segment_counts();
    let rules = table.rules();
    let segment_bytes = table.heap_bytes();
    let rule_bytes: usize = rules
        .iter()
        .map(|r| std::mem::size_of::<Rule>() + r.country.capacity() + r.note.capacity())
        .sum();
    let total = segment_bytes + rule_bytes;
    let per_rule = if rules.is_empty() {
        0.0
    } else {
        total as f64 / rules.len() as f64
    };
    #[derive(Serialize)]
    struct Snapshot {
        generation: Option<i64>,
        rules: usize,
        v4_segments: usize,
        v6_segments: usize,
        segment_bytes: usize,
        rule_bytes: usize,
        total_bytes: usize,
        bytes_per_rule: f64,
    }
    let snapshot = Snapshot {
        generation: policy.generation(),
        rules: rules.len(),
        v4_segments,
        v6_segments,
        segment_bytes,
        rule_bytes,
        total_bytes: total,
        bytes_per_rule: per_rule,
    };
    if json {
        #[derive(Serialize)]
        struct Out<'a> {
            database: PathBuf,
            #[serde(flatten)]
            status: &'a ipcountry::store::CatalogStatus,
            snapshot: Snapshot,
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&Out {
                database: cli::db_display(db),
                status: &st,
                snapshot
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("database:   {}", cli::db_display(db).display());
    match &st.meta {
        Some(m) => {
            println!("catalog:    {} ({})", m.source.join(", "), m.format);
            if let Some(t) = &m.database_type {
                println!("            database type {t}");
            }
            match m.built_at {
                Some(b) => println!("            built {}", utc(b)),
                None => println!("            build date not recorded in the source"),
            }
            println!("            imported {}", utc(m.imported_at));
            println!(
                "            {} countries, {} IPv4 + {} IPv6 ranges from {} networks",
                st.countries,
                thousands(st.catalog_v4),
                thousands(st.catalog_v6),
                thousands(m.networks)
            );
        }
        None => println!("catalog:    none imported (ipcountry import FILE)"),
    }
    if st.permitted.is_empty() {
        println!("permitted:  no country");
    } else {
        println!("permitted:  {}", st.permitted.join(" "));
    }
    let by_source: Vec<String> = st
        .permit_by_source
        .iter()
        .map(|(s, n)| format!("{} {s}", thousands(*n)))
        .collect();
    if by_source.is_empty() {
        println!("permit:     none stored");
    } else {
        println!("permit:     {}", by_source.join(", "));
    }
    println!("deny:       {}", thousands(st.deny));
    println!("allow-host: {}", thousands(st.allow_hosts));
    println!("generation: {}", st.generation);
    println!(
        "snapshot:   {} rules -> {} IPv4 + {} IPv6 segments; {} bytes ({} segments + {} rules), {:.0} bytes per rule",
        thousands(snapshot.rules as u64),
        thousands(v4_segments as u64),
        thousands(v6_segments as u64),
        thousands(total as u64),
        thousands(segment_bytes as u64),
        thousands(rule_bytes as u64),
        per_rule
    );
    Ok(ExitCode::SUCCESS)
}

/// `1234567` → `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// ` (Name)`, or nothing when the catalog has no name.
fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

/// At most `max` characters of `s`.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Unix seconds as `2019-12-24 17:40:14 UTC` (proleptic Gregorian, no time-zone database).
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(447_857), "447,857");
        assert_eq!(thousands(1_367_495), "1,367,495");
    }

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_577_209_214), "2019-12-24 17:40:14 UTC");
        assert_eq!(utc(1_780_345_978), "2026-06-01 20:32:58 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
