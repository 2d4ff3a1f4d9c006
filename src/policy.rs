//! The policy snapshot: everything a verdict needs, compiled, immutable, swapped atomically.
//!
//! A [`Policy`] holds the compiled [`RangeTable`] (permit, deny and builtin rules), the
//! [`HostAllowList`] and the store generation it was built from. The server keeps the current
//! one in a [`SharedPolicy`] (an `ArcSwap`): a session calls [`SharedPolicy::load`] once and
//! decides on that version; `reload` builds a whole new `Policy` off the hot path and
//! [`SharedPolicy::replace`]s it. A lookup never waits on the database or on a lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::hosts::{HostAllowList, HostPattern};
use crate::ranges::table::{RangeTable, TableError};
use crate::ranges::{builtin, Rule};

/// One compiled, immutable version of the policy.
#[derive(Debug)]
pub struct Policy {
    table: RangeTable,
    hosts: HostAllowList,
    generation: Option<i64>,
}

/// Whether the built-in permit rules for private and local space are compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtins {
    /// Permit RFC 1918, loopback, link-local, CGNAT, ULA (the default).
    On,
    /// Only stored rules count.
    Off,
}

impl Policy {
    /// Compiles stored rules (plus the builtins, if on) and allow-host patterns.
    /// `generation` is the store's counter these rules were read at (`None`: not from a store).
    ///
    /// More rules, builtins included, than a table holds ([`MAX_RULES`](crate::ranges::table::MAX_RULES)) is
    /// [`TableError::TooManyRules`]: `reload` then keeps the old snapshot, and `serve` does
    /// not start.
    pub fn try_compile(
        generation: Option<i64>,
        mut rules: Vec<Rule>,
        hosts: impl IntoIterator<Item = HostPattern>,
        builtins: Builtins,
    ) -> Result<Policy, TableError> {
        if builtins == Builtins::On {
            rules.extend(builtin::rules());
        }
        Ok(Policy {
            table: RangeTable::build(rules)?,
            hosts: HostAllowList::new(hosts),
            generation,
        })
    }

    /// [`Policy::try_compile`] for rule sets written in code, far below
    /// [`MAX_RULES`](crate::ranges::table::MAX_RULES): kept for `tests/alloc.rs` and the unit
    /// tests that build policies from a handful of rules. Rules read from a store go through
    /// `try_compile` (`reload::build`).
    ///
    /// # Panics
    ///
    /// When the rules exceed [`MAX_RULES`](crate::ranges::table::MAX_RULES).
    pub fn compile(
        generation: Option<i64>,
        rules: Vec<Rule>,
        hosts: impl IntoIterator<Item = HostPattern>,
        builtins: Builtins,
    ) -> Policy {
        match Policy::try_compile(generation, rules, hosts, builtins) {
            Ok(policy) => policy,
            Err(e) => panic!("Policy::compile: {e}"),
        }
    }

    /// The compiled ranges.
    pub fn table(&self) -> &RangeTable {
        &self.table
    }

    /// The allow-host list.
    pub fn hosts(&self) -> &HostAllowList {
        &self.hosts
    }

    /// The store generation this snapshot was built from.
    pub fn generation(&self) -> Option<i64> {
        self.generation
    }
}

/// The current policy, shared between the sessions and the reloader.
#[derive(Debug)]
pub struct SharedPolicy {
    current: ArcSwap<Policy>,
    health: Mutex<Health>,
}

/// How current the snapshot is known to be.
#[derive(Debug, Clone, Copy)]
struct Health {
    /// Last time the snapshot was loaded, or found to match the store.
    verified: Instant,
    /// Failed polls and rebuilds since the start.
    failures: u64,
    /// Whether the last poll or rebuild reached the store.
    store_up: bool,
    /// When the snapshot was loaded from the store, in Unix seconds (for the `server` row).
    loaded_at: i64,
}

impl SharedPolicy {
    /// Starts with `policy`.
    pub fn new(policy: Policy) -> Self {
        SharedPolicy {
            current: ArcSwap::from_pointee(policy),
            health: Mutex::new(Health {
                verified: Instant::now(),
                failures: 0,
                store_up: true,
                loaded_at: unix_now(),
            }),
        }
    }

    /// Starts with `policy` read from a cache file, not from the store: last known current
    /// `verified_ago`, loaded from the store at `loaded_at` (Unix seconds), and the store not
    /// reached yet.
    pub fn from_cache(policy: Policy, verified_ago: Duration, loaded_at: i64) -> Self {
        let shared = SharedPolicy::new(policy);
        {
            let mut h = shared.health();
            let now = Instant::now();
            h.verified = now.checked_sub(verified_ago).unwrap_or(now);
            h.store_up = false;
            h.loaded_at = loaded_at;
        }
        shared
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Publishes a new snapshot; sessions already running keep the one they loaded.
    pub fn replace(&self, policy: Policy) {
        self.current.store(Arc::new(policy));
        self.health().loaded_at = unix_now();
        self.confirm();
    }

    /// The store was read and the snapshot matches it (a poll found no change).
    pub fn confirm(&self) {
        let mut h = self.health();
        h.verified = Instant::now();
        h.store_up = true;
    }

    /// A poll or a rebuild failed: the snapshot stays, and gets older.
    pub fn note_failure(&self) {
        let mut h = self.health();
        h.failures += 1;
        h.store_up = false;
    }

    /// Time since the snapshot was last loaded or found current.
    pub fn age(&self) -> Duration {
        self.health().verified.elapsed()
    }

    /// When the current snapshot was loaded from the store, in Unix seconds (set by
    /// [`SharedPolicy::new`] and [`SharedPolicy::replace`]; from the cache file for a snapshot
    /// read from one).
    pub fn loaded_at(&self) -> i64 {
        self.health().loaded_at
    }

    /// Failed polls and rebuilds since the start.
    pub fn failures(&self) -> u64 {
        self.health().failures
    }

    /// Whether the last poll or rebuild reached the store.
    pub fn store_up(&self) -> bool {
        self.health().store_up
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        // Plain data: a panic while it was held leaves it usable.
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Now, in Unix seconds (0 if the clock is before 1970).
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
