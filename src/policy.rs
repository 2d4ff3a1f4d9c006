//! The policy snapshot: everything a verdict needs, compiled, immutable, swapped atomically.
//!
//! A [`Policy`] holds the compiled [`RangeTable`] (permit, deny and builtin rules), the
//! [`HostAllowList`] and the store generation it was built from. The server keeps the current
//! one in a [`SharedPolicy`] (an `ArcSwap`): a session calls [`SharedPolicy::load`] once and
//! decides on that version; `reload` builds a whole new `Policy` off the hot path and
//! [`SharedPolicy::replace`]s it. A lookup never waits on the database or on a lock.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// The same policy with its shadow rules deciding, when it has any: what a call would
    /// have got, for the log.
    shadow: Option<Box<Policy>>,
    /// When the next entry expires (Unix seconds): the snapshot is recompiled then.
    next_expiry: Option<i64>,
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
    /// Compiles stored rules (plus the builtins, if on) and allow-host patterns, as of now.
    /// `generation` is the store's counter these rules were read at (`None`: not from a store).
    /// See [`Policy::try_compile_at`].
    ///
    /// More rules, builtins included, than a table holds ([`MAX_RULES`](crate::ranges::table::MAX_RULES)) is
    /// [`TableError::TooManyRules`]: `reload` then keeps the old snapshot, and `serve` does
    /// not start.
    pub fn try_compile(
        generation: Option<i64>,
        rules: Vec<Rule>,
        hosts: impl IntoIterator<Item = HostPattern>,
        builtins: Builtins,
    ) -> Result<Policy, TableError> {
        let hosts = hosts.into_iter().map(|h| (h, None)).collect();
        Policy::try_compile_at(generation, rules, hosts, builtins, crate::store::now_unix())
    }

    /// Compiles the entries that count at `now` (Unix seconds), each with its terms: an entry
    /// whose `expires_at` is `now` or earlier is left out; a shadow rule decides nothing here,
    /// and decides in the [`Policy::shadow`] view, compiled beside it when there are any; the
    /// earliest expiry still to come is [`Policy::next_expiry`]. `hosts` are the allow-host
    /// patterns with their expiry.
    pub fn try_compile_at(
        generation: Option<i64>,
        rules: Vec<Rule>,
        hosts: Vec<(HostPattern, Option<i64>)>,
        builtins: Builtins,
        now: i64,
    ) -> Result<Policy, TableError> {
        let live = |at: &Option<i64>| at.is_none_or(|t| t > now);
        let next_expiry = rules
            .iter()
            .map(|r| &r.terms.expires_at)
            .chain(hosts.iter().map(|(_, at)| at))
            .filter(|at| live(at))
            .flatten()
            .copied()
            .min();
        let hosts: Vec<HostPattern> = hosts
            .into_iter()
            .filter(|(_, at)| live(at))
            .map(|(h, _)| h)
            .collect();
        let (shadow, deciding): (Vec<Rule>, Vec<Rule>) = rules
            .into_iter()
            .filter(|r| live(&r.terms.expires_at))
            .partition(|r| r.terms.shadow);
        let view = if shadow.is_empty() {
            None
        } else {
            let mut all = deciding.clone();
            all.extend(shadow);
            Some(Box::new(Policy::plain(
                generation,
                all,
                hosts.clone(),
                builtins,
            )?))
        };
        let mut policy = Policy::plain(generation, deciding, hosts, builtins)?;
        policy.shadow = view;
        policy.next_expiry = next_expiry;
        Ok(policy)
    }

    /// Every rule given decides.
    fn plain(
        generation: Option<i64>,
        mut rules: Vec<Rule>,
        hosts: Vec<HostPattern>,
        builtins: Builtins,
    ) -> Result<Policy, TableError> {
        if builtins == Builtins::On {
            rules.extend(builtin::rules());
        }
        Ok(Policy {
            table: RangeTable::build(rules)?,
            hosts: HostAllowList::new(hosts),
            generation,
            shadow: None,
            next_expiry: None,
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

    /// This policy with its shadow rules deciding, if it has shadow rules: a call whose
    /// decision there names a shadow rule is logged as matched by it.
    pub fn shadow(&self) -> Option<&Policy> {
        self.shadow.as_deref()
    }

    /// When the next entry expires, in Unix seconds: the snapshot must be recompiled then.
    pub fn next_expiry(&self) -> Option<i64> {
        self.next_expiry
    }
}

/// The current policy, shared between the sessions and the reloader.
#[derive(Debug)]
pub struct SharedPolicy {
    current: ArcSwap<Policy>,
    health: Mutex<Health>,
    /// Counts replacements, for tasks that follow the snapshot (`serve --firewall`).
    replaced: tokio::sync::watch::Sender<u64>,
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
                loaded_at: crate::store::now_unix(),
            }),
            replaced: tokio::sync::watch::Sender::new(0),
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
        self.health().loaded_at = crate::store::now_unix();
        self.confirm();
        self.replaced.send_modify(|n| *n += 1);
    }

    /// Wakes up after every [`SharedPolicy::replace`] (the value counts them); for tasks that
    /// follow the snapshot off the call path, such as `serve --firewall`.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.replaced.subscribe()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::{RuleKind, RuleSource, Terms};
    use std::net::IpAddr;

    fn rule(id: i64, kind: RuleKind, range: &str, expires_at: Option<i64>, shadow: bool) -> Rule {
        Rule {
            id,
            kind,
            range: range.parse().unwrap(),
            country: "AA".into(),
            source: RuleSource::Custom,
            note: String::new(),
            terms: Terms { expires_at, shadow },
        }
    }

    fn decided_by(policy: &Policy, ip: &str) -> Option<(RuleKind, i64)> {
        let ip: IpAddr = ip.parse().unwrap();
        policy.table().lookup(ip).map(|r| (r.kind, r.id))
    }

    #[test]
    fn terms_decide_what_is_compiled_and_when_to_compile_again() {
        use RuleKind::{Deny, Permit};
        let now = 1_000;
        let rules = vec![
            rule(1, Permit, "203.0.113.0/24", None, false),
            rule(1, Deny, "203.0.113.7", Some(now), false), // expired: its second has begun
            rule(2, Deny, "203.0.113.8", Some(now + 50), false),
            rule(3, Deny, "203.0.113.9", None, true), // shadow
            rule(2, Permit, "198.51.100.0/24", Some(now + 90), true), // shadow, expiring
        ];
        let hosts = vec![
            (HostPattern::parse("a.example").unwrap(), Some(now + 20)),
            (HostPattern::parse("b.example").unwrap(), Some(now - 5)),
        ];
        let p = Policy::try_compile_at(Some(3), rules, hosts, Builtins::Off, now).unwrap();
        assert_eq!(decided_by(&p, "203.0.113.7"), Some((Permit, 1)));
        assert_eq!(decided_by(&p, "203.0.113.8"), Some((Deny, 2)));
        assert_eq!(decided_by(&p, "203.0.113.9"), Some((Permit, 1)));
        assert_eq!(decided_by(&p, "198.51.100.1"), None);
        assert_eq!(p.hosts().len(), 1);
        // The earliest expiry still to come, hosts included.
        assert_eq!(p.next_expiry(), Some(now + 20));
        // The shadow view: the shadow rules decide, nothing else changes.
        let view = p.shadow().expect("a shadow view");
        assert_eq!(decided_by(view, "203.0.113.9"), Some((Deny, 3)));
        assert_eq!(decided_by(view, "198.51.100.1"), Some((Permit, 2)));
        assert_eq!(decided_by(view, "203.0.113.8"), Some((Deny, 2)));
        assert_eq!(decided_by(view, "203.0.113.7"), Some((Permit, 1)));
        assert!(view.shadow().is_none());
        // Later, the next entries have expired too, and with no shadow rule left, no view.
        let rules = vec![
            rule(1, Permit, "203.0.113.0/24", None, false),
            rule(2, Deny, "203.0.113.8", Some(now + 50), false),
        ];
        let p = Policy::try_compile_at(Some(3), rules, vec![], Builtins::Off, now + 50).unwrap();
        assert_eq!(decided_by(&p, "203.0.113.8"), Some((Permit, 1)));
        assert_eq!(p.next_expiry(), None);
        assert!(p.shadow().is_none());
    }
}
