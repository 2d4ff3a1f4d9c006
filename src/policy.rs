//! The policy snapshot: everything a verdict needs, compiled, immutable, swapped atomically.
//!
//! A [`Policy`] holds the compiled [`RangeTable`] (permit, deny and builtin rules), the
//! [`HostAllowList`] and the store generation it was built from. The server keeps the current
//! one in a [`SharedPolicy`] (an `ArcSwap`): a session calls [`SharedPolicy::load`] once and
//! decides on that version; `reload` builds a whole new `Policy` off the hot path and
//! [`SharedPolicy::replace`]s it. A lookup never waits on the database or on a lock.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::hosts::{HostAllowList, HostPattern};
use crate::ranges::table::RangeTable;
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
    pub fn compile(
        generation: Option<i64>,
        mut rules: Vec<Rule>,
        hosts: impl IntoIterator<Item = HostPattern>,
        builtins: Builtins,
    ) -> Policy {
        if builtins == Builtins::On {
            rules.extend(builtin::rules());
        }
        Policy {
            table: RangeTable::build(rules),
            hosts: HostAllowList::new(hosts),
            generation,
        }
    }

    /// A policy with no rules at all (every caller a stranger, except builtins if on).
    pub fn empty(builtins: Builtins) -> Policy {
        Policy::compile(None, Vec::new(), Vec::new(), builtins)
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
pub struct SharedPolicy(ArcSwap<Policy>);

impl SharedPolicy {
    /// Starts with `policy`.
    pub fn new(policy: Policy) -> Self {
        SharedPolicy(ArcSwap::from_pointee(policy))
    }

    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<Policy> {
        self.0.load_full()
    }

    /// Publishes a new snapshot; sessions already running keep the one they loaded.
    pub fn replace(&self, policy: Policy) {
        self.0.store(Arc::new(policy));
    }
}
