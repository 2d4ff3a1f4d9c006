//! Keeping the snapshot fresh: rebuild from the store and swap, off the hot path.
//!
//! A rebuild reads the store in one transaction, compiles a new [`Policy`] on a blocking
//! thread, and publishes it with [`SharedPolicy::replace`]. It runs when the store's generation
//! counter changes (polled; every change made with the CLI bumps it, so several servers sharing
//! one database all follow), at once when PostgreSQL announces a change (`LISTEN`/`NOTIFY`, see
//! [`Store::listen`]; polling stays, for announcements missed while disconnected), on SIGHUP,
//! and when a `reload` request arrives.
//!
//! A failed rebuild, e.g. the database is unreachable or holds more rules than a snapshot can
//! ([`ReloadError::Table`]), keeps the old snapshot: calls go on being screened with the last
//! good policy. The watcher logs once when the database goes away and once when it is back (not
//! at every poll), and reconnects by itself (the pool opens new connections; a server started
//! from its snapshot cache opens the store when the database first answers). With a
//! [`SnapshotCache`], every loaded snapshot is written to it and every poll that finds the
//! database at the snapshot's generation confirms it there (see `store::cache`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::hosts::HostPattern;
use crate::policy::{Builtins, Policy, SharedPolicy};
use crate::ranges::table::TableError;
use crate::store::cache::SnapshotCache;
use crate::store::{Change, ChangeMark, Changes, PolicyData, PoolSettings, Store, StoreError};

/// The longest an idle poll goes without a query while the store's change mark stays the same
/// (a backstop: a mark is a strong sign, a query is the answer).
const QUERY_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// Why a rebuild failed (the old snapshot stays).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Store(#[from] StoreError),
    /// The rules do not fit one snapshot (more than `ranges::table::MAX_RULES`).
    #[error("cannot compile the snapshot: {0}")]
    Table(#[from] TableError),
    /// The compile task panicked or was cancelled.
    #[error("snapshot compile task failed: {0}")]
    Compile(String),
}

impl ReloadError {
    /// Whether the database could not be reached (rather than holding something wrong).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ReloadError::Store(e) if e.is_unreachable())
    }
}

/// Reads the store and compiles a policy from it.
pub async fn build(store: &Store, builtins: Builtins) -> Result<Policy, ReloadError> {
    let data = store.load_policy().await?;
    Ok(compile(data, builtins).await?.0)
}

/// Compiles `data` (from the store or a snapshot cache) on a blocking thread, as of now:
/// expired entries left out, shadow rules in the shadow view ([`Policy::try_compile_at`]);
/// gives back the data too, for the cache and for the next expiry.
pub async fn compile(
    data: PolicyData,
    builtins: Builtins,
) -> Result<(Policy, PolicyData), ReloadError> {
    let hosts: Vec<(HostPattern, Option<i64>)> = data
        .allow_hosts
        .iter()
        .filter_map(|h| match HostPattern::parse(&h.pattern) {
            Ok(p) => Some((p, h.expires_at)),
            Err(error) => {
                warn!(pattern = %h.pattern, %error, "skipping invalid allow_host row");
                None
            }
        })
        .collect();
    let compiled = tokio::task::spawn_blocking(move || {
        let policy = Policy::try_compile_at(
            Some(data.generation),
            data.rules.clone(),
            hosts,
            builtins,
            crate::store::now_unix(),
        );
        policy.map(|p| (p, data))
    })
    .await
    .map_err(|e| ReloadError::Compile(e.to_string()))?;
    Ok(compiled?)
}

/// The data to keep beside a snapshot: only when something in it expires later, so that the
/// snapshot can be recompiled then without the database.
pub fn kept_for_expiry(policy: &Policy, data: PolicyData) -> Option<PolicyData> {
    policy.next_expiry().map(|_| data)
}

/// Rebuilds and publishes; on failure keeps the old snapshot and returns the error.
pub async fn reload_now(
    store: &Store,
    shared: &SharedPolicy,
    builtins: Builtins,
) -> Result<(), ReloadError> {
    reload_into(store, shared, builtins, None).await.map(drop)
}

/// [`reload_now`], then writes the new snapshot to `cache` (a failure to write is logged, the
/// new snapshot stays published). Gives back the data when the snapshot has entries that
/// expire later ([`kept_for_expiry`]).
async fn reload_into(
    store: &Store,
    shared: &SharedPolicy,
    builtins: Builtins,
    cache: Option<&SnapshotCache>,
) -> Result<Option<PolicyData>, ReloadError> {
    let started = Instant::now();
    let data = store.load_policy().await?;
    let loaded_at = crate::store::now_unix();
    let (policy, data) = compile(data, builtins).await?;
    let (v4, v6) = policy.table().segment_counts();
    info!(
        generation = policy.generation(),
        v4_segments = v4,
        v6_segments = v6,
        allow_hosts = policy.hosts().len(),
        millis = started.elapsed().as_millis() as u64,
        "policy snapshot loaded"
    );
    shared.replace(policy);
    let data = match cache {
        Some(cache) => write_cache(cache, data, store.url(), loaded_at).await,
        None => Some(data),
    };
    Ok(data.and_then(|data| kept_for_expiry(&shared.load(), data)))
}

/// Writes `data`, read from `database` at `loaded_at`, to `cache` off the runtime; a failure is
/// logged (the snapshot stays published). Gives the data back, unless the writer panicked.
pub async fn write_cache(
    cache: &SnapshotCache,
    data: PolicyData,
    database: &str,
    loaded_at: i64,
) -> Option<PolicyData> {
    let (cache, database) = (cache.clone(), database.to_owned());
    let written = tokio::task::spawn_blocking(move || {
        let result = cache.write(&data, &database, loaded_at);
        (data, result)
    })
    .await;
    match written {
        Ok((data, Ok(()))) => Some(data),
        Ok((data, Err(error))) => {
            warn!(%error, "cannot write the snapshot cache");
            Some(data)
        }
        Err(error) => {
            warn!(%error, "the snapshot cache writer failed");
            None
        }
    }
}

/// Recompiles the current snapshot from its `data` when an entry in it expires, without the
/// database; gives the data back while more entries expire later. Without the data (lost
/// with a failed cache writer), reloads from `store`.
async fn expire(
    data: Option<PolicyData>,
    store: Option<&Store>,
    shared: &SharedPolicy,
    builtins: Builtins,
    cache: Option<&SnapshotCache>,
) -> Result<Option<PolicyData>, ReloadError> {
    let Some(data) = data else {
        return match store {
            Some(store) => reload_into(store, shared, builtins, cache).await,
            None => Ok(None),
        };
    };
    let (policy, data) = compile(data, builtins).await?;
    info!(
        generation = policy.generation(),
        next_expiry = policy.next_expiry(),
        "entries expired: snapshot recompiled"
    );
    let kept = kept_for_expiry(&policy, data);
    shared.replace(policy);
    Ok(kept)
}

/// Sleeps until Unix second `at` has begun; forever when there is nothing to expire.
async fn until_expiry(at: Option<i64>) {
    let Some(at) = at else {
        return std::future::pending().await;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let target = Duration::from_secs(u64::try_from(at).unwrap_or(0));
    tokio::time::sleep(target.saturating_sub(now)).await;
}

/// Watches for changes until `shutdown`: generation polling, SIGHUP, and `notify`.
pub async fn watch(
    store: Store,
    shared: Arc<SharedPolicy>,
    builtins: Builtins,
    poll: Duration,
    notify: Arc<Notify>,
    shutdown: CancellationToken,
) {
    Watcher {
        store: Source::Open(store),
        changes: None,
        shared,
        builtins,
        poll,
        cache: None,
        notify,
        shutdown,
        data: None,
    }
    .run()
    .await;
}

/// Where the watcher's store comes from.
pub enum Source {
    /// An open store.
    Open(Store),
    /// Not reachable yet (the server started from its snapshot cache): opened with these
    /// settings when the database first answers.
    Pending {
        /// The database URL (with its password: it is never shown).
        url: String,
        /// The pool settings.
        settings: PoolSettings,
    },
}

/// A reload watcher with every option (see [`watch`] for the plain one).
pub struct Watcher {
    /// The store.
    pub store: Source,
    /// The store's change announcements, when already subscribed ([`Store::listen`]; made at
    /// the first poll otherwise, and again after the listener fails).
    pub changes: Option<Changes>,
    /// The published snapshot.
    pub shared: Arc<SharedPolicy>,
    /// Whether builtins are compiled in.
    pub builtins: Builtins,
    /// How often the generation is polled.
    pub poll: Duration,
    /// Where snapshots are kept, if anywhere.
    pub cache: Option<SnapshotCache>,
    /// A reload request (`agi://…/reload`).
    pub notify: Arc<Notify>,
    /// Stops the watcher.
    pub shutdown: CancellationToken,
    /// The data the current snapshot was compiled from, when an entry in it expires later
    /// ([`kept_for_expiry`]); `None` otherwise.
    pub data: Option<PolicyData>,
}

/// What woke the watcher up.
enum Wake {
    /// The poll timer, or a change announcement: reload if the generation moved.
    Check,
    /// SIGHUP or a reload request: reload whatever the generation says.
    Force,
    /// The change listener failed: drop it (it is made again at the next poll).
    ListenerDown,
    /// An entry of the snapshot expires now.
    Expiry,
}

impl Watcher {
    /// Runs until shutdown.
    pub async fn run(self) {
        let Watcher {
            store: mut source,
            changes,
            shared,
            builtins,
            poll,
            cache,
            notify,
            shutdown,
            mut data,
        } = self;
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(error) => {
                warn!(%error, "cannot listen for SIGHUP");
                None
            }
        };
        let mut health = Health::default();
        if matches!(source, Source::Pending { .. }) {
            health.down = true; // serve said so when it started from the cache
        }
        let mut listener = changes;
        let mut tick = Clock::every("ipcountry-poll", poll);
        // The store's change mark before the last query that found the snapshot current, and
        // when that query was: while the mark stays the same, a poll needs no query
        // (`Store::change_mark`), up to `QUERY_AT_LEAST_EVERY`.
        let mut seen: Option<(ChangeMark, Instant)> = None;
        loop {
            let wake = tokio::select! {
                _ = shutdown.cancelled() => return,
                () = tick.tick() => Wake::Check,
                _ = notify.notified() => Wake::Force,
                () = until_expiry(shared.load().next_expiry()) => Wake::Expiry,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    info!("SIGHUP: reloading");
                    Wake::Force
                }
                change = async {
                    match listener.as_mut() {
                        Some(l) => l.next().await,
                        None => std::future::pending().await,
                    }
                } => match change {
                    Ok(Change::Announced) => {
                        debug!("change announced by the database");
                        Wake::Check
                    }
                    Ok(Change::Lost) => Wake::Check,
                    Err(error) => {
                        debug!(%error, "change listener failed; polling until it is back");
                        Wake::ListenerDown
                    }
                },
            };
            if let Wake::ListenerDown = wake {
                listener = None;
                continue;
            }
            if let Wake::Expiry = wake {
                let store = match &source {
                    Source::Open(store) => Some(store.clone()),
                    Source::Pending { .. } => None,
                };
                match expire(
                    data.take(),
                    store.as_ref(),
                    &shared,
                    builtins,
                    cache.as_ref(),
                )
                .await
                {
                    Ok(kept) => data = kept,
                    Err(e) => health.failed(&e, &shared),
                }
                continue;
            }
            let step = async {
                let store = match &source {
                    Source::Open(store) => store.clone(),
                    Source::Pending { url, settings } => {
                        match Store::open_with(url, settings).await {
                            Ok(store) => {
                                source = Source::Open(store.clone());
                                store
                            }
                            Err(e) => {
                                health.failed(&e.into(), &shared);
                                return;
                            }
                        }
                    }
                };
                if listener.is_none() {
                    match store.listen().await {
                        Ok(l) => listener = l,
                        Err(error) => debug!(%error, "cannot listen for changes yet"),
                    }
                }
                let current = shared.load().generation();
                // Taken before the query it stands for: a commit after it moves the next one.
                let mark = store.change_mark();
                // `seen` holds only while the snapshot is confirmed current: taken here, put
                // back (or renewed) on each confirmation.
                let earlier = seen.take();
                if !matches!(wake, Wake::Force) {
                    let unchanged = current.is_some()
                        && !health.down
                        && earlier.as_ref().zip(mark.as_ref()).is_some_and(
                            |((earlier, queried_at), mark)| {
                                mark.unchanged_since(earlier)
                                    && queried_at.elapsed() < QUERY_AT_LEAST_EVERY
                            },
                        );
                    let confirmed = if unchanged {
                        seen = earlier;
                        true
                    } else {
                        match store.generation().await {
                            Ok(g) if Some(g) == current => {
                                seen = mark.map(|m| (m, Instant::now()));
                                true
                            }
                            Ok(g) => {
                                debug!(from = ?current, to = g, "store generation changed");
                                false
                            }
                            Err(e) => {
                                health.failed(&e.into(), &shared);
                                return;
                            }
                        }
                    };
                    if confirmed {
                        health.ok(current, &shared);
                        confirm(cache.as_ref()).await;
                        return;
                    }
                }
                match reload_into(&store, &shared, builtins, cache.as_ref()).await {
                    Ok(kept) => {
                        data = kept;
                        seen = mark.map(|m| (m, Instant::now()));
                        health.ok(shared.load().generation(), &shared);
                    }
                    Err(e) => health.failed(&e, &shared),
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                () = step => {}
            }
        }
    }
}

/// Sets the cache's confirmation time, off the runtime.
async fn confirm(cache: Option<&SnapshotCache>) {
    if let Some(cache) = cache {
        let cache = cache.clone();
        match tokio::task::spawn_blocking(move || cache.confirm()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) if error.is_missing() => {}
            Ok(Err(error)) => debug!(%error, "cannot confirm the snapshot cache"),
            Err(error) => debug!(%error, "the snapshot cache task failed"),
        }
    }
}

/// What the watcher last logged, so that an outage is logged once when it starts and once
/// when it ends, and a failing reload once per generation.
#[derive(Default)]
struct Health {
    /// The database was unreachable at the last attempt.
    down: bool,
    /// The last reload failure for another reason, already logged.
    failed: Option<String>,
}

impl Health {
    fn ok(&mut self, generation: Option<i64>, shared: &SharedPolicy) {
        shared.confirm();
        if self.down {
            info!(generation = ?generation, "database reachable again; snapshot up to date");
            self.down = false;
        }
        self.failed = None;
    }

    fn failed(&mut self, e: &ReloadError, shared: &SharedPolicy) {
        shared.note_failure();
        let generation = shared.load().generation();
        if e.is_unreachable() {
            if !self.down {
                error!(error = %e, generation = ?generation,
                    "database unreachable; screening goes on with the current snapshot");
                self.down = true;
            } else {
                debug!(error = %e, "database still unreachable");
            }
            return;
        }
        if self.down {
            info!("database reachable again");
            self.down = false;
        }
        let text = e.to_string();
        if self.failed.as_deref() != Some(text.as_str()) {
            error!(error = %e, "reload failed; keeping the previous snapshot");
            self.failed = Some(text);
        }
    }
}
