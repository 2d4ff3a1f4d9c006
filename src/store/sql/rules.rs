//! The shared SQL of the policy tables (`permit`, `deny`, `allow_host`, `generation`), written
//! once and compiled for each backend: this file is a module of `sqlite.rs`, `mysql.rs` and
//! `postgres.rs` (`#[path]`), and `super` is that backend, giving [`Db`](super::Db) and its
//! dialect (placeholders, new ids, read snapshots, notification). [`Store`](crate::store::Store)
//! dispatches to it; see the store module's "One code path".

use std::future::Future;

use sqlx::{Pool, Row, Transaction};

use super::{insert_id, sql, Conn, Db, DbRow, NOTIFY, READ_SNAPSHOT, RETURNING_ID};
use crate::ranges::{Family, IpRange, Rule, RuleKind, RuleSource, Terms};
use crate::store::{
    is_unique_violation, missing_generation, now_unix, query_err, AllowHost, PolicyData, Purged,
    StoreError, ALLOW_HOST_TABLE,
};

/// The columns of a rule row, in the order [`decode_rule`] expects them (`sql/catalog.rs`
/// selects the same, qualified, in a join).
pub(in crate::store) const RULE_COLUMNS: &str =
    "id, family, start_ip, end_ip, country_code, source, note, expires_at, shadow";

/// The columns of an `allow_host` row, in the order [`decode_host`] expects them.
const HOST_COLUMNS: &str = "id, pattern, note, created_at, expires_at";

/// Adds a rule (see [`Store::add_rule`](crate::store::Store::add_rule)).
pub(in crate::store) async fn add_rule(
    pool: &Pool<Db>,
    kind: RuleKind,
    range: IpRange,
    country: &str,
    source: RuleSource,
    note: &str,
    terms: Terms,
) -> Result<Rule, StoreError> {
    const CONTEXT: &str = "adding a rule";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    bump_in(&mut tx).await?;
    if let Some(existing) = select_rule_by_range(&mut tx, kind, range).await? {
        return Err(StoreError::Duplicate {
            existing: Box::new(existing),
        });
    }
    let inserted = insert_rule_in(&mut tx, kind, range, country, source, note, terms).await;
    let winner = find_rule(pool, kind, range);
    let duplicate = |existing| StoreError::Duplicate {
        existing: Box::new(existing),
    };
    let id = commit_insert(tx, inserted, CONTEXT, winner, duplicate).await?;
    Ok(Rule {
        id,
        kind,
        range,
        country: country.to_owned(),
        source,
        note: note.to_owned(),
        terms,
    })
}

/// Inserts a rule row inside a write transaction (the generation already bumped, the range
/// checked for a duplicate) and gives its new id. The one `INSERT` of a rule: `add_rule` and
/// the knock page (`sql/knock.rs`) both write through it.
pub(in crate::store) async fn insert_rule_in(
    conn: &mut Conn,
    kind: RuleKind,
    range: IpRange,
    country: &str,
    source: RuleSource,
    note: &str,
    terms: Terms,
) -> Result<i64, sqlx::Error> {
    let text = format!(
        "INSERT INTO {} \
         (family, start_ip, end_ip, country_code, source, note, created_at, expires_at, shadow) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?){RETURNING_ID}",
        kind.as_str()
    );
    let text = sql(&text);
    let query = sqlx::query(&text)
        .bind(range.family().number())
        .bind(range.start_bytes())
        .bind(range.end_bytes())
        .bind(country)
        .bind(source.as_str())
        .bind(note)
        .bind(now_unix())
        .bind(terms.expires_at)
        .bind(i64::from(terms.shadow));
    insert_id(query, conn).await
}

/// Removes rule `#id` (see [`Store::remove_rule`](crate::store::Store::remove_rule)).
pub(in crate::store) async fn remove_rule(
    pool: &Pool<Db>,
    kind: RuleKind,
    id: i64,
) -> Result<Rule, StoreError> {
    const CONTEXT: &str = "removing a rule";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    bump_in(&mut tx).await?;
    let text = format!("SELECT {RULE_COLUMNS} FROM {} WHERE id = ?", kind.as_str());
    let row = sqlx::query(&sql(&text))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
    let Some(row) = row else {
        return Err(StoreError::NotFound {
            table: kind.as_str(),
            what: format!("#{id}"),
        });
    };
    let rule = decode_rule(kind, &row)?;
    delete_rule_in(&mut tx, kind, rule.id).await?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok(rule)
}

/// Removes the rule with exactly this range.
pub(in crate::store) async fn remove_rule_by_range(
    pool: &Pool<Db>,
    kind: RuleKind,
    range: IpRange,
) -> Result<Rule, StoreError> {
    const CONTEXT: &str = "removing a rule";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    bump_in(&mut tx).await?;
    let Some(rule) = select_rule_by_range(&mut tx, kind, range).await? else {
        return Err(StoreError::NotFound {
            table: kind.as_str(),
            what: range.to_string(),
        });
    };
    delete_rule_in(&mut tx, kind, rule.id).await?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok(rule)
}

/// All rules of one table, in address order.
pub(in crate::store) async fn list_rules(
    pool: &Pool<Db>,
    kind: RuleKind,
) -> Result<Vec<Rule>, StoreError> {
    let mut conn = pool.acquire().await.map_err(query_err("listing rules"))?;
    select_rules(&mut conn, kind).await
}

/// The rule of one table with exactly this range, if any.
pub(in crate::store) async fn find_rule(
    pool: &Pool<Db>,
    kind: RuleKind,
    range: IpRange,
) -> Result<Option<Rule>, StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(query_err("looking up a rule"))?;
    select_rule_by_range(&mut conn, kind, range).await
}

/// Adds an allowed host pattern (see [`Store::add_allow_host`](crate::store::Store::add_allow_host)).
pub(in crate::store) async fn add_allow_host(
    pool: &Pool<Db>,
    pattern: &str,
    note: &str,
    expires_at: Option<i64>,
) -> Result<AllowHost, StoreError> {
    const CONTEXT: &str = "adding an allowed host";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    bump_in(&mut tx).await?;
    if let Some(existing) = select_host_by_pattern(&mut tx, pattern).await? {
        return Err(StoreError::DuplicateHost { existing });
    }
    let created_at = now_unix();
    let text = format!(
        "INSERT INTO allow_host (pattern, note, created_at, expires_at) \
         VALUES (?, ?, ?, ?){RETURNING_ID}"
    );
    let text = sql(&text);
    let query = sqlx::query(&text)
        .bind(pattern)
        .bind(note)
        .bind(created_at)
        .bind(expires_at);
    let inserted = insert_id(query, &mut tx).await;
    let winner = async {
        let mut conn = pool.acquire().await.map_err(query_err(CONTEXT))?;
        select_host_by_pattern(&mut conn, pattern).await
    };
    let duplicate = |existing| StoreError::DuplicateHost { existing };
    let id = commit_insert(tx, inserted, CONTEXT, winner, duplicate).await?;
    Ok(AllowHost {
        id,
        pattern: pattern.to_owned(),
        note: note.to_owned(),
        created_at,
        expires_at,
    })
}

/// Removes an allowed host by exact pattern, else by id (`3` or `#3`).
pub(in crate::store) async fn remove_allow_host(
    pool: &Pool<Db>,
    pattern_or_id: &str,
) -> Result<AllowHost, StoreError> {
    const CONTEXT: &str = "removing an allowed host";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    bump_in(&mut tx).await?;
    let mut found = select_host_by_pattern(&mut tx, pattern_or_id).await?;
    if found.is_none() {
        if let Ok(id) = pattern_or_id
            .strip_prefix('#')
            .unwrap_or(pattern_or_id)
            .parse::<i64>()
        {
            let text = format!("SELECT {HOST_COLUMNS} FROM allow_host WHERE id = ?");
            let row = sqlx::query(&sql(&text))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(query_err(CONTEXT))?;
            found = row.as_ref().map(decode_host).transpose()?;
        }
    }
    let Some(host) = found else {
        return Err(StoreError::NotFound {
            table: ALLOW_HOST_TABLE,
            what: pattern_or_id.to_owned(),
        });
    };
    sqlx::query(&sql("DELETE FROM allow_host WHERE id = ?"))
        .bind(host.id)
        .execute(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok(host)
}

/// All allowed host patterns, ordered by pattern.
pub(in crate::store) async fn list_allow_hosts(
    pool: &Pool<Db>,
) -> Result<Vec<AllowHost>, StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(query_err("listing allowed hosts"))?;
    select_hosts(&mut conn).await
}

/// Deletes every rule and allowed host that expired before `now` (Unix seconds), in one
/// transaction that bumps the generation only when something was deleted.
pub(in crate::store) async fn purge_expired(
    pool: &Pool<Db>,
    now: i64,
) -> Result<Purged, StoreError> {
    const CONTEXT: &str = "purging expired entries";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    // First, as in every write: the lock, before anything is read.
    bump_in(&mut tx).await?;
    let mut counts = [0u64; 3];
    for (table, count) in ["permit", "deny", "allow_host"]
        .iter()
        .zip(counts.iter_mut())
    {
        let text = format!("DELETE FROM {table} WHERE expires_at IS NOT NULL AND expires_at <= ?");
        *count = sqlx::query(&sql(&text))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(query_err(CONTEXT))?
            .rows_affected();
    }
    let [permit, deny, allow_hosts] = counts;
    let purged = Purged {
        permit,
        deny,
        allow_hosts,
    };
    if purged.total() == 0 {
        // Nothing changed: no new generation, no reload anywhere.
        tx.rollback().await.map_err(query_err(CONTEXT))?;
    } else {
        tx.commit().await.map_err(query_err(CONTEXT))?;
    }
    Ok(purged)
}

/// The current generation.
pub(in crate::store) async fn generation(pool: &Pool<Db>) -> Result<i64, StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(query_err("reading the generation"))?;
    read_generation(&mut conn).await
}

/// Bumps the generation alone (`ipcountry reload`).
pub(in crate::store) async fn bump_generation(pool: &Pool<Db>) -> Result<i64, StoreError> {
    const CONTEXT: &str = "bumping the generation";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    let generation = bump_in(&mut tx).await?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok(generation)
}

/// The generation, all rules and all allowed hosts, read as one snapshot.
pub(in crate::store) async fn load_policy(pool: &Pool<Db>) -> Result<PolicyData, StoreError> {
    const CONTEXT: &str = "loading the policy";
    let mut tx = begin_read(pool, CONTEXT).await?;
    let generation = read_generation(&mut tx).await?;
    // Read in table order (no ORDER BY: a plain scan, not an index walk with a row lookup
    // per rule), then sort in memory, which is several times cheaper for 100,000 rules.
    let mut rules = scan_rules(&mut tx, RuleKind::Permit).await?;
    let mut deny = scan_rules(&mut tx, RuleKind::Deny).await?;
    rules.sort_unstable_by_key(|r| (r.range, r.id));
    deny.sort_unstable_by_key(|r| (r.range, r.id));
    rules.append(&mut deny);
    let allow_hosts = select_hosts(&mut tx).await?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok(PolicyData {
        generation,
        rules,
        allow_hosts,
    })
}

/// A read-only transaction that reads one snapshot of the database on every backend.
pub(in crate::store) async fn begin_read(
    pool: &Pool<Db>,
    context: &'static str,
) -> Result<Transaction<'static, Db>, StoreError> {
    let mut tx = pool.begin().await.map_err(query_err(context))?;
    if let Some(first) = READ_SNAPSHOT {
        sqlx::query(first)
            .execute(&mut *tx)
            .await
            .map_err(query_err(context))?;
    }
    Ok(tx)
}

/// Bumps the generation inside a transaction and returns the new value. Called first in every
/// write transaction, so it also takes the write lock (SQLite) or the counter's row lock
/// (MariaDB, PostgreSQL) before anything is read; on PostgreSQL it also queues the change
/// notification, sent when the transaction commits.
pub(in crate::store) async fn bump_in(conn: &mut Conn) -> Result<i64, StoreError> {
    const CONTEXT: &str = "bumping the generation";
    let done = sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(query_err(CONTEXT))?;
    if done.rows_affected() != 1 {
        return Err(missing_generation());
    }
    if let Some(notify) = NOTIFY {
        sqlx::query(notify)
            .execute(&mut *conn)
            .await
            .map_err(query_err(CONTEXT))?;
    }
    read_generation(conn).await
}

/// The current generation counter.
pub(in crate::store) async fn read_generation(conn: &mut Conn) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT value FROM generation WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err("reading the generation"))?;
    let row = row.ok_or_else(missing_generation)?;
    row.try_get::<i64, _>(0).map_err(|_| StoreError::Corrupt {
        table: "generation",
        id: 1,
        why: "the counter is not an integer",
    })
}

/// All rules of one table, in address order.
pub(in crate::store) async fn select_rules(
    conn: &mut Conn,
    kind: RuleKind,
) -> Result<Vec<Rule>, StoreError> {
    let order = " ORDER BY family, start_ip, end_ip, id";
    every_rule(conn, kind, order, "listing rules").await
}

/// Every rule of one table, in no particular order (see [`load_policy`]).
async fn scan_rules(conn: &mut Conn, kind: RuleKind) -> Result<Vec<Rule>, StoreError> {
    every_rule(conn, kind, "", "loading rules").await
}

/// Every rule of one table, decoded, in the order the `order` clause (or none) gives.
async fn every_rule(
    conn: &mut Conn,
    kind: RuleKind,
    order: &str,
    context: &'static str,
) -> Result<Vec<Rule>, StoreError> {
    let text = format!("SELECT {RULE_COLUMNS} FROM {}{order}", kind.as_str());
    let rows = sqlx::query(&text)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err(context))?;
    rows.iter().map(|row| decode_rule(kind, row)).collect()
}

/// The rule of one table with exactly this range.
pub(in crate::store) async fn select_rule_by_range(
    conn: &mut Conn,
    kind: RuleKind,
    range: IpRange,
) -> Result<Option<Rule>, StoreError> {
    let text = format!(
        "SELECT {RULE_COLUMNS} FROM {} WHERE family = ? AND start_ip = ? AND end_ip = ?",
        kind.as_str()
    );
    let row = sqlx::query(&sql(&text))
        .bind(range.family().number())
        .bind(range.start_bytes())
        .bind(range.end_bytes())
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err("looking up a rule"))?;
    row.as_ref().map(|row| decode_rule(kind, row)).transpose()
}

/// Deletes rule `id` of one table.
pub(in crate::store) async fn delete_rule_in(
    conn: &mut Conn,
    kind: RuleKind,
    id: i64,
) -> Result<(), StoreError> {
    let text = format!("DELETE FROM {} WHERE id = ?", kind.as_str());
    sqlx::query(&sql(&text))
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(query_err("removing a rule"))?;
    Ok(())
}

/// All allowed hosts, ordered by pattern byte for byte (sorted here: the backends' text
/// collations differ).
async fn select_hosts(conn: &mut Conn) -> Result<Vec<AllowHost>, StoreError> {
    let text = format!("SELECT {HOST_COLUMNS} FROM allow_host");
    let rows = sqlx::query(&text)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("listing allowed hosts"))?;
    let mut hosts = rows
        .iter()
        .map(decode_host)
        .collect::<Result<Vec<_>, _>>()?;
    hosts.sort_unstable_by(|a, b| a.pattern.cmp(&b.pattern).then(a.id.cmp(&b.id)));
    Ok(hosts)
}

/// The allowed host with exactly this pattern. (MariaDB's default collation compares text
/// case-insensitively; the exact comparison is made here, so every backend matches the same.)
async fn select_host_by_pattern(
    conn: &mut Conn,
    pattern: &str,
) -> Result<Option<AllowHost>, StoreError> {
    let text = format!("SELECT {HOST_COLUMNS} FROM allow_host WHERE pattern = ?");
    let rows = sqlx::query(&sql(&text))
        .bind(pattern)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("looking up an allowed host"))?;
    for row in &rows {
        let host = decode_host(row)?;
        if host.pattern == pattern {
            return Ok(Some(host));
        }
    }
    Ok(None)
}

/// Decodes a row of [`RULE_COLUMNS`]; anything malformed is [`StoreError::Corrupt`].
pub(in crate::store) fn decode_rule(kind: RuleKind, row: &DbRow) -> Result<Rule, StoreError> {
    // Columns by position (the order of RULE_COLUMNS) and borrowed where possible: this runs
    // once per rule on every snapshot rebuild, for 100,000+ country rules.
    let table = kind.as_str();
    let id: i64 = row.try_get(0).map_err(|source| StoreError::Query {
        context: "reading a rule id",
        source,
    })?;
    let corrupt = |why| StoreError::Corrupt { table, id, why };
    let range = decode_range(row, 1, corrupt)?;
    let country: String = row
        .try_get(4)
        .map_err(|_| corrupt("country_code is not text"))?;
    let source: &str = row.try_get(5).map_err(|_| corrupt("source is not text"))?;
    let source = RuleSource::parse(source).ok_or_else(|| corrupt("unknown source"))?;
    let note: String = row.try_get(6).map_err(|_| corrupt("note is not text"))?;
    let expires_at: Option<i64> = row
        .try_get(7)
        .map_err(|_| corrupt("expires_at is not an integer"))?;
    let shadow: i64 = row
        .try_get(8)
        .map_err(|_| corrupt("shadow is not an integer"))?;
    Ok(Rule {
        id,
        kind,
        range,
        country,
        source,
        note,
        terms: Terms {
            expires_at,
            shadow: shadow != 0,
        },
    })
}

/// Decodes the `family`, `start_ip`, `end_ip` columns at positions `first`, `first + 1` and
/// `first + 2` (by position and borrowed: this runs for every rule and catalog row read);
/// anything malformed is the error `corrupt` makes of the reason.
pub(in crate::store) fn decode_range(
    row: &DbRow,
    first: usize,
    corrupt: impl Fn(&'static str) -> StoreError,
) -> Result<IpRange, StoreError> {
    let family: i64 = row
        .try_get(first)
        .map_err(|_| corrupt("family is not an integer"))?;
    let family = Family::from_number(family).ok_or_else(|| corrupt("family is not 4 or 6"))?;
    let start: &[u8] = row
        .try_get(first + 1)
        .map_err(|_| corrupt("start_ip is not a blob"))?;
    let end: &[u8] = row
        .try_get(first + 2)
        .map_err(|_| corrupt("end_ip is not a blob"))?;
    IpRange::from_bytes(family, start, end)
        .ok_or_else(|| corrupt("start_ip/end_ip do not fit the family, or start > end"))
}

/// Decodes an `allow_host` row ([`HOST_COLUMNS`]); anything malformed is
/// [`StoreError::Corrupt`].
fn decode_host(row: &DbRow) -> Result<AllowHost, StoreError> {
    let id: i64 = row.try_get(0).map_err(|source| StoreError::Query {
        context: "reading an allowed host id",
        source,
    })?;
    let corrupt = |why| StoreError::Corrupt {
        table: ALLOW_HOST_TABLE,
        id,
        why,
    };
    let pattern: String = row.try_get(1).map_err(|_| corrupt("pattern is not text"))?;
    let note: String = row.try_get(2).map_err(|_| corrupt("note is not text"))?;
    let created_at: i64 = row
        .try_get(3)
        .map_err(|_| corrupt("created_at is not an integer"))?;
    let expires_at: Option<i64> = row
        .try_get(4)
        .map_err(|_| corrupt("expires_at is not an integer"))?;
    Ok(AllowHost {
        id,
        pattern,
        note,
        created_at,
        expires_at,
    })
}

/// Commits `tx` after its `INSERT` gave `inserted`, and returns the new id.
///
/// If the insert failed, `tx` is dropped (rolled back) first: PostgreSQL would refuse further
/// statements in it. A unique-constraint violation means a concurrent writer stored the same
/// row first: `winner`, awaited only then and outside the failed transaction, finds that row,
/// and `duplicate` reports it. Anything else is a query error.
async fn commit_insert<T>(
    tx: Transaction<'_, Db>,
    inserted: Result<i64, sqlx::Error>,
    context: &'static str,
    winner: impl Future<Output = Result<Option<T>, StoreError>>,
    duplicate: impl FnOnce(T) -> StoreError,
) -> Result<i64, StoreError> {
    let source = match inserted {
        Ok(id) => {
            tx.commit().await.map_err(query_err(context))?;
            return Ok(id);
        }
        Err(source) => source,
    };
    drop(tx);
    if is_unique_violation(&source) {
        match winner.await {
            Ok(Some(existing)) => return Err(duplicate(existing)),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Query { context, source })
}

/// Test access to the raw tables, past every check of the store.
#[cfg(test)]
pub(in crate::store) mod raw {
    use super::*;
    use crate::store::tests::RawArg;

    /// Runs `text` (with `?` placeholders) binding `args`; gives the rows affected.
    pub(in crate::store) async fn execute(
        pool: &Pool<Db>,
        text: &str,
        args: Vec<RawArg>,
    ) -> Result<u64, sqlx::Error> {
        let text = sql(text);
        let mut query = sqlx::query(&text);
        for arg in args {
            query = match arg {
                RawArg::Int(v) => query.bind(v),
                RawArg::Bytes(v) => query.bind(v),
                RawArg::Text(v) => query.bind(v),
            };
        }
        Ok(query.execute(pool).await?.rows_affected())
    }

    /// The schema's table names, sorted.
    pub(in crate::store) async fn tables(pool: &Pool<Db>) -> Vec<String> {
        let mut names: Vec<String> = sqlx::query_scalar(super::super::TABLES)
            .fetch_all(pool)
            .await
            .expect("list tables");
        names.sort();
        names
    }

    /// Rows of the migrations table.
    pub(in crate::store) async fn applied_migrations(pool: &Pool<Db>) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .expect("count migrations")
    }

    /// The whole catalog table, in key order.
    pub(in crate::store) async fn catalog_rows(
        pool: &Pool<Db>,
    ) -> Vec<(String, i64, Vec<u8>, Vec<u8>)> {
        sqlx::query_as(
            "SELECT country_code, family, start_ip, end_ip FROM catalog \
             ORDER BY country_code, family, start_ip",
        )
        .fetch_all(pool)
        .await
        .expect("read catalog")
    }
}
