//! The shared SQL of the `server` table (see `store::servers`), written once and compiled for
//! each backend like `sql/rules.rs`: `super` is the backend, giving [`Db`](super::Db) and its
//! placeholders. Nothing here touches the generation.

use sqlx::{Pool, Row};

use super::{sql, Db, DbRow};
use crate::store::servers::ServerRow;
use crate::store::{query_err, StoreError};

/// The table, as named in errors.
const TABLE: &str = "server";

/// The columns of a row, in the order [`decode`] expects them.
const COLUMNS: &str =
    "id, host, pid, listen, version, started_at, generation, loaded_at, heartbeat";

/// Inserts `row`, or updates the row with its id, in one transaction.
///
/// Portable upsert: `UPDATE` first (on SQLite that also takes the write lock before anything
/// is read), and `INSERT` only when no row has the id. An `UPDATE` that matched a row but
/// changed nothing reports 0 rows on MariaDB/MySQL, so 0 is checked with a `SELECT` before
/// inserting.
pub(in crate::store) async fn upsert(pool: &Pool<Db>, row: &ServerRow) -> Result<(), StoreError> {
    const CONTEXT: &str = "registering a server";
    let listen = row.listen_column();
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    let updated = sqlx::query(&sql(
        "UPDATE server SET host = ?, pid = ?, listen = ?, version = ?, started_at = ?, \
         generation = ?, loaded_at = ?, heartbeat = ? WHERE id = ?",
    ))
    .bind(&row.host)
    .bind(row.pid)
    .bind(&listen)
    .bind(&row.version)
    .bind(row.started_at)
    .bind(row.generation)
    .bind(row.loaded_at)
    .bind(row.heartbeat)
    .bind(&row.id)
    .execute(&mut *tx)
    .await
    .map_err(query_err(CONTEXT))?;
    let exists = updated.rows_affected() > 0
        || sqlx::query(&sql("SELECT 1 FROM server WHERE id = ?"))
            .bind(&row.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(query_err(CONTEXT))?
            .is_some();
    if !exists {
        let text = format!("INSERT INTO server ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
        sqlx::query(&sql(&text))
            .bind(&row.id)
            .bind(&row.host)
            .bind(row.pid)
            .bind(&listen)
            .bind(&row.version)
            .bind(row.started_at)
            .bind(row.generation)
            .bind(row.loaded_at)
            .bind(row.heartbeat)
            .execute(&mut *tx)
            .await
            .map_err(query_err(CONTEXT))?;
    }
    tx.commit().await.map_err(query_err(CONTEXT))
}

/// Deletes the row with this id, if there is one.
pub(in crate::store) async fn delete(pool: &Pool<Db>, id: &str) -> Result<(), StoreError> {
    sqlx::query(&sql("DELETE FROM server WHERE id = ?"))
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_err("deregistering a server"))?;
    Ok(())
}

/// Every row, ordered by host, pid and id (sorted here: the backends' collations differ).
pub(in crate::store) async fn list(pool: &Pool<Db>) -> Result<Vec<ServerRow>, StoreError> {
    let text = format!("SELECT {COLUMNS} FROM server");
    let rows = sqlx::query(&text)
        .fetch_all(pool)
        .await
        .map_err(query_err("listing servers"))?;
    let mut servers = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
    servers.sort_unstable_by(|a, b| (&a.host, a.pid, &a.id).cmp(&(&b.host, b.pid, &b.id)));
    Ok(servers)
}

/// Deletes the rows whose heartbeat is before `before` (Unix seconds); gives how many.
pub(in crate::store) async fn prune(pool: &Pool<Db>, before: i64) -> Result<u64, StoreError> {
    let done = sqlx::query(&sql("DELETE FROM server WHERE heartbeat < ?"))
        .bind(before)
        .execute(pool)
        .await
        .map_err(query_err("pruning stale servers"))?;
    Ok(done.rows_affected())
}

/// Decodes a row of [`COLUMNS`]; anything malformed is [`StoreError::Corrupt`] (the id, which
/// is text here, is not in the error: row `#0`).
fn decode(row: &DbRow) -> Result<ServerRow, StoreError> {
    let corrupt = |why| StoreError::Corrupt {
        table: TABLE,
        id: 0,
        why,
    };
    let text = |i: usize, why| row.try_get::<String, _>(i).map_err(|_| corrupt(why));
    let int = |i: usize, why| row.try_get::<i64, _>(i).map_err(|_| corrupt(why));
    Ok(ServerRow {
        id: text(0, "id is not text")?,
        host: text(1, "host is not text")?,
        pid: int(2, "pid is not an integer")?,
        listen: ServerRow::split_listen(&text(3, "listen is not text")?),
        version: text(4, "version is not text")?,
        started_at: int(5, "started_at is not an integer")?,
        generation: int(6, "generation is not an integer")?,
        loaded_at: int(7, "loaded_at is not an integer")?,
        heartbeat: int(8, "heartbeat is not an integer")?,
    })
}
