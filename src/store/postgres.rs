//! PostgreSQL: connection options, the schema, the dialect the shared SQL in `sql/` needs (see
//! the parent module's "One code path"), and change notification. `sql/*.rs` is compiled here
//! with [`Db`] = [`sqlx::Postgres`].
//!
//! PostgreSQL numbers its placeholders (`$1`, `$2`, ...): [`sql`] rewrites the shared SQL's
//! `?`s. Writers run in `READ COMMITTED` (the default), so after the generation bump's row lock
//! every statement sees what was committed before; read transactions ask for
//! `REPEATABLE READ` so that all their statements read one snapshot. Every change sends a
//! `NOTIFY` on [`CHANNEL`] with its transaction (delivered at commit, never on rollback);
//! servers `LISTEN` (see `store::listen`).

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::Row;

use super::PoolSettings;

/// The backend the shared SQL is compiled for here.
pub(super) type Db = sqlx::Postgres;
/// Its connection type.
pub(super) type Conn = PgConnection;
/// Its row type.
pub(super) type DbRow = PgRow;

/// The schema, embedded at build time.
pub(super) static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The `LISTEN`/`NOTIFY` channel every change is announced on.
pub(super) const CHANNEL: &str = "ipcountry_generation";

/// The shared SQL with its `?` placeholders numbered (`$1`, `$2`, ...). A `?` inside a
/// single-quoted literal is left alone (the shared SQL has none, but a literal must not shift
/// the numbering).
pub(super) fn sql(text: &str) -> Cow<'_, str> {
    if !text.contains('?') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut n = 0_usize;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Appended to an `INSERT` whose new id [`insert_id`] reads.
pub(super) const RETURNING_ID: &str = " RETURNING id";

/// Runs an `INSERT ... RETURNING id` and gives the new row's id.
pub(super) async fn insert_id(
    query: Query<'_, Db, PgArguments>,
    conn: &mut Conn,
) -> Result<i64, sqlx::Error> {
    query.fetch_one(conn).await?.try_get(0)
}

/// The first statement of a read transaction: one snapshot for all its statements.
pub(super) const READ_SNAPSHOT: Option<&str> =
    Some("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY");

/// Sent in every write transaction, after the generation bump.
pub(super) const NOTIFY: Option<&str> = Some("SELECT pg_notify('ipcountry_generation', '')");

/// The tables of the schema, for the tests.
#[cfg(test)]
pub(super) const TABLES: &str =
    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()";

/// Opens the pool for a `postgres://` (or `postgresql://`) URL.
pub(super) async fn connect(url: &str, settings: &PoolSettings) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.application_name("ipcountry");
    super::probe(&options, settings).await?;
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
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

#[cfg(test)]
mod tests {
    use super::sql;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(sql("SELECT 1"), "SELECT 1");
        assert_eq!(
            sql("INSERT INTO t (a, b) VALUES (?, ?), (?, '?')"),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, '?')"
        );
    }
}

#[allow(clippy::duplicate_mod)]
#[path = "sql/knock.rs"]
pub(super) mod knock;
