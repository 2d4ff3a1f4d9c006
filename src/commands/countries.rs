//! `import`, `refresh`, `countries`, `country add|rm` and `status`: the country catalog.

use super::open_store;
use super::text::{named, thousands, truncate, utc};
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::{CountryAction, CountryFieldArg, ImportArgs};
use ipcountry::import::{Catalog, CountryField, Format, ImportOptions};
use ipcountry::policy::Builtins;
use ipcountry::ranges::Rule;
use ipcountry::reload;
use ipcountry::store::cache::SnapshotCache;
use ipcountry::store::{
    CountryDiff, CountryRules, ImportSummary, PermitReport, StoreError, UnpermitReport,
};

use crate::cli;

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
/// A store refusal (unknown or missing country, no catalog) is printed and exits 1; any other
/// failure is an error (exit 2).
fn refusal(e: StoreError) -> Result<ExitCode> {
    match e {
        StoreError::UnknownCountries { .. }
        | StoreError::MissingCountries { .. }
        | StoreError::NoCatalog => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        e => Err(e.into()),
    }
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
        outln!("format: {}", describe_format(self.format));
        if let Some(t) = self.database_type {
            outln!("database type: {t}");
        }
        if let Some(b) = self.built_at {
            outln!("built: {}", utc(b));
        }
        outln!(
            "read {} networks from {} in {:.2} s",
            thousands(self.networks),
            files.join(", "),
            self.read_seconds
        );
    }
}
/// `--json` for `import` and `refresh`: what was read and the store's report, as one object.
fn print_json<R: Serialize>(read: ReadInfo<'_>, report: &R) -> Result<ExitCode> {
    #[derive(Serialize)]
    struct Out<'a, R> {
        #[serde(flatten)]
        read: ReadInfo<'a>,
        #[serde(flatten)]
        report: &'a R,
    }
    outln!("{}", serde_json::to_string_pretty(&Out { read, report })?);
    Ok(ExitCode::SUCCESS)
}
/// Opens the store, runs one catalog transaction under a spinner, and closes the store again.
/// Gives the result and the time the transaction took; a refusal (unknown or missing country,
/// no catalog) is printed and becomes `Err(exit 1)`; any other failure is an error.
async fn in_transaction<T, Fut>(
    db: &str,
    message: &'static str,
    op: impl FnOnce(ipcountry::store::Store) -> Fut,
) -> Result<Result<(T, Duration), ExitCode>>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let store = open_store(db).await?;
    let started = Instant::now();
    let spin = spinner(message);
    let result = op(store.clone()).await;
    spin.finish_and_clear();
    let elapsed = started.elapsed();
    store.close().await;
    match result {
        Ok(value) => Ok(Ok((value, elapsed))),
        Err(e) => refusal(e).map(Err),
    }
}

pub(crate) async fn import(db: &str, args: ImportArgs, json: bool) -> Result<ExitCode> {
    let (catalog, read) = read_files(&args).await?;
    let c = &catalog;
    let transaction = in_transaction(
        db,
        "storing the catalog (one transaction)",
        |store| async move { store.import_catalog(c).await },
    );
    let (summary, stored) = match transaction.await? {
        Ok(done) => done,
        Err(code) => return Ok(code),
    };
    let info = ReadInfo::new(&catalog, read, stored);
    if json {
        #[derive(Serialize)]
        struct Summary<'a> {
            summary: &'a ImportSummary,
        }
        return print_json(info, &Summary { summary: &summary });
    }
    info.print();
    print_summary(&summary, stored);
    if summary.regenerated.is_empty() {
        outln!("no country is permitted yet: `ipcountry countries`, then `ipcountry country add CC...`");
    }
    Ok(ExitCode::SUCCESS)
}
fn print_summary(s: &ImportSummary, stored: Duration) {
    outln!(
        "catalog: {} countries, {} IPv4 + {} IPv6 ranges, stored in {:.2} s",
        s.countries,
        thousands(s.v4_ranges),
        thousands(s.v6_ranges),
        stored.as_secs_f64()
    );
    if !s.regenerated.is_empty() {
        outln!(
            "permitted countries {}: geolite rules {} -> {}",
            s.regenerated.join(" "),
            thousands(s.geolite_before),
            thousands(s.geolite_after)
        );
    }
    if s.identical_kept > 0 {
        outln!(
            "{} range(s) already had an identical permit rule, which is kept",
            s.identical_kept
        );
    }
    outln!("generation {}", s.generation);
}
pub(crate) async fn refresh(
    db: &str,
    args: ImportArgs,
    dry_run: bool,
    json: bool,
) -> Result<ExitCode> {
    let (catalog, read) = read_files(&args).await?;
    let message = if dry_run {
        "computing the refresh (one transaction, rolled back)"
    } else {
        "refreshing (one transaction)"
    };
    let c = &catalog;
    let transaction = in_transaction(db, message, |store| async move {
        store.refresh(c, dry_run).await
    });
    let (report, stored) = match transaction.await? {
        Ok(done) => done,
        Err(code) => return Ok(code),
    };
    let info = ReadInfo::new(&catalog, read, stored);
    if json {
        return print_json(info, &report);
    }
    info.print();
    let (permitted, others): (Vec<&CountryDiff>, Vec<&CountryDiff>) =
        report.countries.iter().partition(|c| c.permitted);
    for c in &permitted {
        outln!(
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
            outln!("   kept {r} (identical to a {} range)", c.code);
        }
        for r in &c.custom_inside {
            outln!("   {r} lies inside a {} range (redundant, kept)", c.code);
        }
        for r in &c.custom_overlapping {
            outln!("   {r} overlaps {} ranges (kept)", c.code);
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
        outln!(
            "{} countries not permitted changed (+{} -{} ranges): {shown}",
            others.len(),
            thousands(added),
            thousands(removed)
        );
    }
    print_summary(&report.summary, stored);
    if dry_run {
        outln!("dry run: nothing was changed");
    } else {
        outln!("custom permit entries and the deny table were not touched");
    }
    Ok(ExitCode::SUCCESS)
}
pub(crate) async fn countries(db: &str, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let rows = store.countries().await?;
    store.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no country catalog imported yet (ipcountry import FILE)");
        return Ok(ExitCode::SUCCESS);
    }
    outln!("CC {:<32} {:>9} {:>9}  PERMITTED", "NAME", "IPv4", "IPv6");
    for c in &rows {
        let permitted = if c.permitted {
            format!("yes ({} rules)", thousands(c.rules))
        } else {
            "no".to_owned()
        };
        outln!(
            "{} {:<32} {:>9} {:>9}  {permitted}",
            c.code,
            truncate(&c.name, 32),
            thousands(c.v4_ranges),
            thousands(c.v6_ranges)
        );
    }
    Ok(ExitCode::SUCCESS)
}
pub(crate) async fn country(db: &str, action: CountryAction, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let printed = match action {
        CountryAction::Add { codes } => (store.permit_countries(&codes).await)
            .map(|report| print_report(&report, json, print_permitted)),
        CountryAction::Rm { codes } => (store.unpermit_countries(&codes).await)
            .map(|report| print_report(&report, json, print_unpermitted)),
    };
    store.close().await;
    match printed {
        Ok(printed) => printed.map(|()| ExitCode::SUCCESS),
        Err(e) => refusal(e),
    }
}
/// `report` as JSON, or as `human` prints it.
fn print_report<T: Serialize>(report: &T, json: bool, human: fn(&T)) -> Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        human(report);
    }
    Ok(())
}
fn print_permitted(report: &PermitReport) {
    for c in &report.added {
        let (country, rules) = (code_and_name(c), thousands(c.rules));
        outln!("permitted {country}: {rules} geolite rules");
        for r in &c.identical {
            outln!("   kept {r} (identical to a {} range)", c.code);
        }
    }
    print_codes("already permitted", &report.already);
    print_generation(report.generation);
}
fn print_unpermitted(report: &UnpermitReport) {
    for c in &report.removed {
        let (country, rules) = (code_and_name(c), thousands(c.rules));
        outln!("no longer permitted: {country} ({rules} geolite rules removed)");
    }
    print_codes("not permitted", &report.not_permitted);
    print_generation(report.generation);
}
/// `US (United States)`, or just the code when the catalog has no name.
fn code_and_name(c: &CountryRules) -> String {
    format!("{}{}", c.code, named(&c.name))
}
/// `label: US CA`, unless there are no codes.
fn print_codes(label: &str, codes: &[String]) {
    if !codes.is_empty() {
        outln!("{label}: {}", codes.join(" "));
    }
}
/// The new generation, when something was written.
fn print_generation(generation: Option<i64>) {
    if let Some(g) = generation {
        outln!("generation {g}");
    }
}
/// What `status` says about a running server's snapshot, from its snapshot cache
/// (`IPCOUNTRY_SNAPSHOT_CACHE`, as `serve --snapshot-cache`).
#[derive(Serialize)]
struct ServerSnapshot {
    cache: PathBuf,
    /// `None` when the file does not exist (yet) or cannot be read: see `error`.
    generation: Option<i64>,
    loaded_at: Option<i64>,
    confirmed_at: Option<i64>,
    confirmed_seconds_ago: Option<u64>,
    database: Option<String>,
    error: Option<String>,
}

impl ServerSnapshot {
    /// Reads the cache named by `IPCOUNTRY_SNAPSHOT_CACHE`, if set.
    async fn read() -> Option<ServerSnapshot> {
        let path = std::env::var_os("IPCOUNTRY_SNAPSHOT_CACHE").filter(|v| !v.is_empty())?;
        let cache = SnapshotCache::new(path);
        let reader = cache.clone();
        let read = tokio::task::spawn_blocking(move || reader.read()).await;
        let mut out = ServerSnapshot {
            cache: cache.path().to_owned(),
            generation: None,
            loaded_at: None,
            confirmed_at: None,
            confirmed_seconds_ago: None,
            database: None,
            error: None,
        };
        match read {
            Ok(Ok(cached)) => {
                out.generation = Some(cached.data.generation);
                out.loaded_at = Some(cached.loaded_at);
                let since = |t: std::time::SystemTime, base: std::time::SystemTime| {
                    t.duration_since(base).map_or(0, |d| d.as_secs())
                };
                out.confirmed_at =
                    i64::try_from(since(cached.confirmed_at, std::time::UNIX_EPOCH)).ok();
                out.confirmed_seconds_ago =
                    Some(since(std::time::SystemTime::now(), cached.confirmed_at));
                out.database = Some(cached.database);
            }
            Ok(Err(e)) if e.is_missing() => out.error = Some("no snapshot written yet".to_owned()),
            Ok(Err(e)) => out.error = Some(e.to_string()),
            Err(e) => out.error = Some(e.to_string()),
        }
        Some(out)
    }

    /// The `server:` lines; `db_generation` is the database's, when it could be read.
    fn print(&self, db_generation: Option<i64>) {
        let (Some(generation), Some(loaded), Some(ago)) =
            (self.generation, self.loaded_at, self.confirmed_seconds_ago)
        else {
            outln!(
                "server:     {} ({})",
                self.error.as_deref().unwrap_or("no snapshot"),
                self.cache.display()
            );
            return;
        };
        let versus = match db_generation {
            Some(g) if g == generation => " (current)".to_owned(),
            Some(g) => format!(" (the database is at {g}: not loaded yet)"),
            None => " (the database cannot be reached)".to_owned(),
        };
        outln!(
            "server:     snapshot of generation {generation}{versus}, loaded {}",
            utc(loaded)
        );
        outln!(
            "            last confirmed against the database {} ago ({})",
            humantime::format_duration(Duration::from_secs(ago)),
            self.cache.display()
        );
    }
}

pub(crate) async fn status(db: &str, builtins: Builtins, json: bool) -> Result<ExitCode> {
    let server = ServerSnapshot::read().await;
    let store = match open_store(db).await {
        Ok(store) => store,
        Err(e) => {
            // The database is away: what the servers screen with is still worth saying.
            if let Some(server) = &server {
                if json {
                    outln!(
                        "{}",
                        serde_json::to_string_pretty(
                            &serde_json::json!({ "server_snapshot": server })
                        )?
                    );
                } else {
                    outln!(
                        "database:   {} (cannot be reached)",
                        cli::db_display(db).display()
                    );
                    server.print(None);
                }
            }
            return Err(e);
        }
    };
    let st = store.catalog_status().await?;
    let policy = reload::build(&store, builtins)
        .await
        .context("cannot compile the tables")?;
    let servers = super::servers::read(&store, st.generation).await;
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
            server_snapshot: Option<ServerSnapshot>,
            servers: Option<Vec<super::servers::ServerStatus>>,
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&Out {
                database: cli::db_display(db),
                status: &st,
                snapshot,
                server_snapshot: server,
                servers,
            })?
        );
        return Ok(ExitCode::SUCCESS);
    }
    outln!("database:   {}", cli::db_display(db).display());
    match &st.meta {
        Some(m) => {
            outln!("catalog:    {} ({})", m.source.join(", "), m.format);
            if let Some(t) = &m.database_type {
                outln!("            database type {t}");
            }
            match m.built_at {
                Some(b) => outln!("            built {}", utc(b)),
                None => outln!("            build date not recorded in the source"),
            }
            outln!("            imported {}", utc(m.imported_at));
            outln!(
                "            {} countries, {} IPv4 + {} IPv6 ranges from {} networks",
                st.countries,
                thousands(st.catalog_v4),
                thousands(st.catalog_v6),
                thousands(m.networks)
            );
        }
        None => outln!("catalog:    none imported (ipcountry import FILE)"),
    }
    if st.permitted.is_empty() {
        outln!("permitted:  no country");
    } else {
        outln!("permitted:  {}", st.permitted.join(" "));
    }
    let by_source: Vec<String> = st
        .permit_by_source
        .iter()
        .map(|(s, n)| format!("{} {s}", thousands(*n)))
        .collect();
    if by_source.is_empty() {
        outln!("permit:     none stored");
    } else {
        outln!("permit:     {}", by_source.join(", "));
    }
    outln!("deny:       {}", thousands(st.deny));
    outln!("allow-host: {}", thousands(st.allow_hosts));
    outln!("generation: {}", st.generation);
    outln!(
        "snapshot:   {} rules -> {} IPv4 + {} IPv6 segments; {} bytes ({} segments + {} rules), {:.0} bytes per rule",
        thousands(snapshot.rules as u64),
        thousands(v4_segments as u64),
        thousands(v6_segments as u64),
        thousands(total as u64),
        thousands(segment_bytes as u64),
        thousands(rule_bytes as u64),
        per_rule
    );
    super::servers::print(servers.as_deref());
    if let Some(server) = &server {
        server.print(Some(st.generation));
    }
    Ok(ExitCode::SUCCESS)
}
