//! SQLite, the embedded default: connection options, the schema, and the dialect the shared SQL
//! in `sql/` needs (see the parent module's "One code path"). `sql/*.rs` is compiled here with
//! [`Db`] = [`sqlx::Sqlite`].

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow,
};
use sqlx::Connection;
use sqlx::Row;

use super::PoolSettings;

/// The backend the shared SQL is compiled for here.
pub(super) type Db = sqlx::Sqlite;
/// Its connection type.
pub(super) type Conn = SqliteConnection;
/// Its row type.
pub(super) type DbRow = SqliteRow;

/// The schema, embedded at build time.
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Applies the pending migrations under the database's write lock (`BEGIN IMMEDIATE`), each
/// migration a savepoint inside it, so that processes opening a new file at once (a service
/// starting while an admin runs a command) take turns: sqlx's own migration lock is a no-op on
/// SQLite, and without this the second process fails with "table permit already exists".
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    MIGRATOR.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// How long a connection waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite takes the `?` placeholders the shared SQL is written with.
pub(super) fn sql(text: &str) -> Cow<'_, str> {
    Cow::Borrowed(text)
}

/// Appended to an `INSERT` whose new id [`insert_id`] reads.
pub(super) const RETURNING_ID: &str = " RETURNING id";

/// Runs an `INSERT ... RETURNING id` and gives the new row's id.
pub(super) async fn insert_id<'q>(
    query: Query<'q, Db, SqliteArguments<'q>>,
    conn: &mut Conn,
) -> Result<i64, sqlx::Error> {
    query.fetch_one(conn).await?.try_get(0)
}

/// Read transactions need nothing more: SQLite (WAL) reads one snapshot per transaction.
pub(super) const READ_SNAPSHOT: Option<&str> = None;

/// No change notification: servers on SQLite poll the generation.
pub(super) const NOTIFY: Option<&str> = None;

/// The tables of the schema, for the tests.
#[cfg(test)]
pub(super) const TABLES: &str = "SELECT name FROM sqlite_master WHERE type = 'table'";

/// Opens the pool for `url`: an sqlx SQLite URL or a plain file path.
///
/// File databases use WAL journaling, so several processes can share one file; every
/// connection waits up to 5 s for another writer's lock. An in-memory database lives in a single
/// pooled connection that is never recycled.
pub(super) async fn connect(url: &str, settings: &PoolSettings) -> Result<SqlitePool, sqlx::Error> {
    let (options, in_memory) = connect_options(url)?;
    let pool_options = if in_memory {
        // Each connection to `sqlite::memory:` would otherwise risk a fresh, empty database
        // once the last one closes: keep exactly one, forever.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        SqlitePoolOptions::new().max_connections(settings.max_connections)
    };
    pool_options
        .acquire_timeout(settings.acquire_timeout)
        // A SQLite connection is a file handle in this process: there is nothing to test, and
        // the ping is a round trip to the connection's thread before every query (two of an
        // idle server's wake-ups at each poll, issue 18). A broken file still fails the query.
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// Connection options for `url`, and whether it names an in-memory database.
fn connect_options(url: &str) -> Result<(SqliteConnectOptions, bool), sqlx::Error> {
    let (options, in_memory) = if url.starts_with("sqlite:") {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        (SqliteConnectOptions::from_str(url)?, in_memory)
    } else if url.is_empty() {
        return Err(sqlx::Error::Configuration("empty database path".into()));
    } else {
        (SqliteConnectOptions::new().filename(url), false)
    };
    let options = options
        .create_if_missing(true)
        .busy_timeout(BUSY_TIMEOUT)
        // Hand rows from the SQLite worker thread over in large batches: the default (50) costs a
        // thread wake-up per 50 rows, which dominates reading a 100,000-rule permit table.
        .row_buffer_size(4096)
        .foreign_keys(true);
    let options = if in_memory {
        options
    } else {
        options.journal_mode(SqliteJournalMode::Wal)
    };
    Ok((options, in_memory))
}

/// The database file `url` names, for its change mark (`mark.rs`); `None` in memory.
pub(super) fn file_path(url: &str) -> Option<std::path::PathBuf> {
    let (options, in_memory) = connect_options(url).ok()?;
    if in_memory {
        return None;
    }
    let path = options.get_filename();
    // Opened by now: resolve it once, so that the mark does not depend on the directory.
    Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()))
}

// The shared SQL, compiled for this backend: on purpose, each backend loads these files as
// modules of its own (see the store module's "One code path").
#[allow(clippy::duplicate_mod)]
#[path = "sql/rules.rs"]
pub(super) mod rules;

#[allow(clippy::duplicate_mod)]
#[path = "sql/catalog.rs"]
pub(super) mod catalog;

#[allow(clippy::duplicate_mod)]
#[path = "sql/servers.rs"]
pub(super) mod servers;

#[allow(clippy::duplicate_mod)]
#[path = "sql/peers.rs"]
pub(super) mod peers;

#[allow(clippy::duplicate_mod)]
#[path = "sql/knock.rs"]
pub(super) mod knock;
