//! MariaDB and MySQL: connection options, the schema, and the dialect the shared SQL in `sql/`
//! needs (see the parent module's "One code path"). `sql/*.rs` is compiled here with [`Db`] =
//! [`sqlx::MySql`].
//!
//! Targets MariaDB 10.11 (Debian's, FreePBX's) and MySQL 8. MySQL 8 has no
//! `INSERT ... RETURNING`, so new ids come from the protocol's last-insert-id instead. Every
//! connection is put in `REPEATABLE READ` (InnoDB's default, which a server may have changed):
//! a read transaction then reads one snapshot, and a writer, whose first statement is the
//! locking generation bump, reads what was committed before it got the lock.

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::mysql::{
    MySqlArguments, MySqlConnectOptions, MySqlConnection, MySqlPool, MySqlPoolOptions, MySqlRow,
};
use sqlx::query::Query;
use sqlx::Executor;

use super::PoolSettings;

/// The backend the shared SQL is compiled for here.
pub(super) type Db = sqlx::MySql;
/// Its connection type.
pub(super) type Conn = MySqlConnection;
/// Its row type.
pub(super) type DbRow = MySqlRow;

/// The schema, embedded at build time.
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/mysql");

/// How long one `GET_LOCK` waits before [`migrate`] says it is waiting and asks again.
const MIGRATION_LOCK_STEP_SECS: u32 = 10;

/// Applies the pending migrations holding a named lock of this database (`GET_LOCK`), so that
/// processes starting at once on a new database take turns. sqlx's own lock asks
/// `GET_LOCK(name, -1)`, which MariaDB answers with NULL at once (a negative timeout is not
/// "forever" there): without this, the second process fails on the first one's half-applied
/// migration ("partially applied", "Duplicate entry"). Like PostgreSQL's advisory lock, it waits
/// for as long as the other process migrates; the lock ends with the session if that process
/// dies.
pub(super) async fn migrate(pool: &MySqlPool) -> Result<(), MigrateError> {
    let mut conn = pool.acquire().await?;
    // A lock name is at most 64 characters; a database name too.
    let name: String =
        sqlx::query_scalar("SELECT LEFT(CONCAT('ipcountry-migrate:', DATABASE()), 64)")
            .fetch_one(&mut *conn)
            .await?;
    loop {
        let granted: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
            .bind(&name)
            .bind(MIGRATION_LOCK_STEP_SECS)
            .fetch_one(&mut *conn)
            .await?;
        match granted {
            Some(1) => break,
            Some(_) => tracing::info!(
                lock = %name,
                "another process is applying the schema migrations; waiting for it"
            ),
            None => {
                return Err(MigrateError::Source(
                    format!("the server refused the migration lock {name} (GET_LOCK gave NULL)")
                        .into(),
                ))
            }
        }
    }
    let migrated = MIGRATOR.run_direct(&mut *conn).await;
    let released = sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(&name)
        .execute(&mut *conn)
        .await;
    // A lock this session could not release would block the next process's migrations for as
    // long as the pooled connection lives: close it instead of returning it to the pool.
    if released.is_err() {
        drop(conn.detach());
    }
    migrated
}

/// MariaDB and MySQL take the `?` placeholders the shared SQL is written with.
pub(super) fn sql(text: &str) -> Cow<'_, str> {
    Cow::Borrowed(text)
}

/// Nothing appended: [`insert_id`] reads the protocol's last-insert-id (MySQL 8 has no
/// `INSERT ... RETURNING`).
pub(super) const RETURNING_ID: &str = "";

/// Runs an `INSERT` and gives the new row's id.
pub(super) async fn insert_id(
    query: Query<'_, Db, MySqlArguments>,
    conn: &mut Conn,
) -> Result<i64, sqlx::Error> {
    let done = query.execute(conn).await?;
    i64::try_from(done.last_insert_id()).map_err(|e| sqlx::Error::Decode(e.into()))
}

/// Read transactions need nothing more: every connection is in `REPEATABLE READ`.
pub(super) const READ_SNAPSHOT: Option<&str> = None;

/// No change notification: servers on MariaDB/MySQL poll the generation.
pub(super) const NOTIFY: Option<&str> = None;

/// The tables of the schema, for the tests.
#[cfg(test)]
pub(super) const TABLES: &str =
    "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()";

/// Opens the pool for a `mysql://` or `mariadb://` URL.
pub(super) async fn connect(url: &str, settings: &PoolSettings) -> Result<MySqlPool, sqlx::Error> {
    let url = match url.strip_prefix("mariadb:") {
        Some(rest) => Cow::Owned(format!("mysql:{rest}")),
        None => Cow::Borrowed(url),
    };
    let options = MySqlConnectOptions::from_str(&url)?.charset("utf8mb4");
    super::probe(&options, settings).await?;
    MySqlPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .await
                    .map(drop)
            })
        })
        .connect_with(options)
        .await
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
