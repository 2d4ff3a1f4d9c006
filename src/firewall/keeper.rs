//! `serve --firewall`: the kernel's table kept in step with the snapshot.
//!
//! A task of its own, off the call path: it wakes up when the snapshot is replaced
//! ([`SharedPolicy::subscribe`]), turns the new snapshot into [`Sets`] on a blocking thread,
//! and when they differ from what the kernel has, applies the new table in one transaction
//! ([`apply::apply`]). The first apply saves the table found before the server started, as
//! `firewall --apply` does, so `ipcountry firewall --rollback` goes back to it. A failure keeps
//! the old table in the kernel; it is logged with the count of failures so far, and the next
//! change tries again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use super::apply::{self, Nft};
use super::{nft, Sets, VoipPorts};
use crate::policy::SharedPolicy;

/// Counts of the keeper's work, readable while it runs.
#[derive(Debug, Default)]
pub struct KeeperStats {
    /// Tables applied.
    pub applied: AtomicU64,
    /// Applies that failed (the old table stayed).
    pub failures: AtomicU64,
}

/// The task's settings.
#[derive(Debug)]
pub struct Keeper {
    /// The snapshot to follow.
    pub shared: Arc<SharedPolicy>,
    /// The ports the chain filters.
    pub ports: VoipPorts,
    /// Where the ruleset and the backup go.
    pub state_dir: PathBuf,
    /// The `nft` program.
    pub nft: Nft,
    /// Counters.
    pub stats: Arc<KeeperStats>,
    /// Stops the task.
    pub shutdown: CancellationToken,
}

impl Keeper {
    /// Applies the current snapshot, then every new one, until shutdown.
    pub async fn run(self) {
        let mut replaced = self.shared.subscribe();
        let mut current: Option<Sets> = None;
        loop {
            // Marks the version seen before it is read, so a replacement meanwhile wakes us.
            replaced.borrow_and_update();
            let policy = self.shared.load();
            let generation = policy.generation();
            let sets = tokio::task::spawn_blocking(move || Sets::from_policy(&policy)).await;
            if let Ok(sets) = sets {
                if current.as_ref() != Some(&sets)
                    && self.apply(&sets, current.as_ref(), generation).await
                {
                    current = Some(sets);
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                changed = replaced.changed() => if changed.is_err() { break },
            }
        }
    }

    /// Applies `sets`; true when the kernel has them now.
    async fn apply(&self, sets: &Sets, old: Option<&Sets>, generation: Option<i64>) -> bool {
        let header = vec![format!(
            "ipcountry serve --firewall, snapshot generation {}",
            generation.map_or_else(|| "-".to_owned(), |g| g.to_string())
        )];
        let ruleset = nft::ruleset(sets, &self.ports, &header);
        let (nft, dir) = (self.nft.clone(), self.state_dir.clone());
        // The first apply keeps a backup of the table found at start.
        let backup = old.is_none();
        let done =
            tokio::task::spawn_blocking(move || apply::apply(&nft, &ruleset, &dir, backup)).await;
        match done {
            Ok(Ok(applied)) => {
                self.stats.applied.fetch_add(1, Ordering::Relaxed);
                info!(
                    generation,
                    changes = %changes(old, sets),
                    millis = applied.load_time.as_millis() as u64,
                    backup = applied.backup.as_ref().map(|p| p.display().to_string()),
                    "firewall table applied"
                );
                true
            }
            Ok(Err(e)) => self.failed(&e.to_string(), generation),
            Err(e) => self.failed(&e.to_string(), generation),
        }
    }

    fn failed(&self, cause: &str, generation: Option<i64>) -> bool {
        let failures = self.stats.failures.fetch_add(1, Ordering::Relaxed) + 1;
        error!(
            generation,
            failures, cause, "firewall table not applied; the kernel keeps the old one"
        );
        false
    }
}

/// What changed per set: `permit4 +3 -1, deny4 +1 -0` (intervals added, removed); the sizes
/// of the sets for the first apply.
pub fn changes(old: Option<&Sets>, new: &Sets) -> String {
    let mut parts = Vec::new();
    for (i, (name, ranges)) in new.named().into_iter().enumerate() {
        match old {
            None => parts.push(format!("{name} {}", ranges.len())),
            Some(old) => {
                let before: BTreeSet<_> = old.named()[i].1.iter().map(|r| r.to_string()).collect();
                let after: BTreeSet<_> = ranges.iter().map(|r| r.to_string()).collect();
                let added = after.difference(&before).count();
                let removed = before.difference(&after).count();
                if added + removed > 0 {
                    parts.push(format!("{name} +{added} -{removed}"));
                }
            }
        }
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}
