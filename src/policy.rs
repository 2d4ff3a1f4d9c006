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
