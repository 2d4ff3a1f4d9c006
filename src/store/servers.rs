//! The `server` table: every running `ipcountry serve` keeps one row there, so that `status`
//! can list who screens with this database and a change can say when nobody does ("no silent
//! second database", issue 12).
//!
//! # Where it sits
//!
//! `heartbeat` (in the server) writes its own row with [`Store::register_server`] at start and
//! at every beat, and deletes it with [`Store::deregister_server`] on a clean exit; the CLI
//! reads them with [`Store::servers`]. Rows whose heartbeat is far older than the stale limit
//! (a server that was killed) are deleted with [`Store::prune_servers`] when a server starts.
//! The SQL is in `sql/servers.rs`, compiled per backend like the rest.
//!
//! Writing a server row never bumps the generation: that would make every server reload.
//! Times are Unix seconds from the clock of whoever wrote them; with servers on several hosts,
//! their clocks should agree to within a few seconds (an age is never shown below zero).

use std::time::Duration;

use serde::Serialize;

use super::{now_unix, on_pool, Store, StoreError};

/// The longest heartbeat interval a server may use (`serve --heartbeat`).
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(30);

/// A row whose heartbeat is older than this (three of the longest heartbeat intervals) is
/// stale: the server is probably not running any more.
pub const STALE_AFTER: Duration = Duration::from_secs(3 * MAX_HEARTBEAT.as_secs());

/// A row whose heartbeat is older than this is deleted when a server starts
/// ([`Store::prune_servers`]).
pub const PRUNE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// One row of the `server` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerRow {
    /// Unique per process: `host/pid/started_at`.
    pub id: String,
    /// The host name the server runs on.
    pub host: String,
    /// Its process id.
    pub pid: i64,
    /// The addresses it listens on (`127.0.0.1:4573`).
    pub listen: Vec<String>,
    /// Its version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// When it started, in Unix seconds.
    pub started_at: i64,
    /// The generation of the snapshot it screens with.
    pub generation: i64,
    /// When that snapshot was loaded from the database, in Unix seconds.
    pub loaded_at: i64,
    /// When the row was last written, in Unix seconds.
    pub heartbeat: i64,
}

impl ServerRow {
    /// How long ago the row was last written, as of `now` (Unix seconds; never negative).
    pub fn heartbeat_age(&self, now: i64) -> Duration {
        seconds_between(self.heartbeat, now)
    }

    /// How long ago the server's snapshot was loaded, as of `now`.
    pub fn loaded_age(&self, now: i64) -> Duration {
        seconds_between(self.loaded_at, now)
    }

    /// Whether the heartbeat is within [`STALE_AFTER`] of `now`: the server is running.
    pub fn is_live(&self, now: i64) -> bool {
        self.heartbeat_age(now) <= STALE_AFTER
    }

    /// The `listen` column: the addresses, comma-separated.
    pub(super) fn listen_column(&self) -> String {
        self.listen.join(",")
    }

    /// The addresses of a `listen` column.
    pub(super) fn split_listen(column: &str) -> Vec<String> {
        column
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `later - earlier` seconds, zero when `later` is before `earlier`.
fn seconds_between(earlier: i64, later: i64) -> Duration {
    Duration::from_secs(u64::try_from(later.saturating_sub(earlier)).unwrap_or(0))
}

impl Store {
    /// Writes `row` (its `heartbeat` included, as given): inserts it, or updates the row with
    /// its id. Never bumps the generation.
    pub async fn register_server(&self, row: &ServerRow) -> Result<(), StoreError> {
        on_pool!(self, servers::upsert(row))
    }

    /// Deletes the row with this id (a clean shutdown). Deleting a row that is not there is
    /// no error.
    pub async fn deregister_server(&self, id: &str) -> Result<(), StoreError> {
        on_pool!(self, servers::delete(id))
    }

    /// Every server row, stale ones included, ordered by host, then pid, then id.
    pub async fn servers(&self) -> Result<Vec<ServerRow>, StoreError> {
        on_pool!(self, servers::list())
    }

    /// Deletes the rows whose heartbeat is more than `older_than` ago, and gives how many.
    pub async fn prune_servers(&self, older_than: Duration) -> Result<u64, StoreError> {
        let age = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        on_pool!(self, servers::prune(now_unix().saturating_sub(age)))
    }
}

#[cfg(test)]
#[path = "servers_tests.rs"]
mod tests;
