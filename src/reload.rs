//! Keeping the snapshot fresh: rebuild from the store and swap, off the hot path.
//!
//! A rebuild reads the store in one transaction, compiles a new [`Policy`] on a blocking
//! thread, and publishes it with [`SharedPolicy::replace`]. It runs when the store's generation
//! counter changes (polled; every change made with the CLI bumps it, so several servers sharing
//! one database all follow), on SIGHUP, and when a `reload` request arrives. A failed rebuild,
//! e.g. the database is unreachable or holds more rules than a snapshot can
//! ([`ReloadError::Table`]), keeps the old snapshot and logs an error: calls go on being
//! screened with the last good policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::hosts::HostPattern;
use crate::policy::{Builtins, Policy, SharedPolicy};
use crate::ranges::table::TableError;
use crate::store::{Store, StoreError};

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

/// Reads the store and compiles a policy from it.
pub async fn build(store: &Store, builtins: Builtins) -> Result<Policy, ReloadError> {
    let data = store.load_policy().await?;
    let hosts: Vec<HostPattern> = data
        .allow_hosts
        .iter()
        .filter_map(|h| match HostPattern::parse(&h.pattern) {
            Ok(p) => Some(p),
            Err(error) => {
                warn!(pattern = %h.pattern, %error, "skipping invalid allow_host row");
                None
            }
        })
        .collect();
    let generation = data.generation;
    let rules = data.rules;
    let compiled = tokio::task::spawn_blocking(move || {
        Policy::try_compile(Some(generation), rules, hosts, builtins)
    })
    .await
    .map_err(|e| ReloadError::Compile(e.to_string()))?;
    Ok(compiled?)
}

/// Rebuilds and publishes; on failure keeps the old snapshot and returns the error.
pub async fn reload_now(
    store: &Store,
    shared: &SharedPolicy,
    builtins: Builtins,
) -> Result<(), ReloadError> {
    let started = Instant::now();
    let policy = build(store, builtins).await?;
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
    Ok(())
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
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            warn!(%error, "cannot listen for SIGHUP");
            None
        }
    };
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            _ = notify.notified() => true,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                info!("SIGHUP: reloading");
                true
            }
        };
        if !forced {
            let current = shared.load().generation();
            match store.generation().await {
                Ok(g) if Some(g) == current => {
                    shared.confirm();
                    continue;
                }
                Ok(g) => debug!(from = ?current, to = g, "store generation changed"),
                Err(error) => {
                    shared.note_failure();
                    warn!(%error, "cannot poll the store; keeping the current snapshot");
                    continue;
                }
            }
        }
        if let Err(error) = reload_now(&store, &shared, builtins).await {
            shared.note_failure();
            error!(%error, "reload failed; keeping the previous snapshot");
        }
    }
}
