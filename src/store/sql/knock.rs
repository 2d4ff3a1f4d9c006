//! The shared SQL of the knock page (the `knock_user` table, and the knock's write to
//! `permit`), written once and compiled for each backend like `sql/rules.rs` (`super` is the
//! backend). Rule rows are read, inserted and deleted with `sql/rules.rs`'s helpers, inside a
//! transaction that bumps the generation first, as every policy change does.

use sqlx::{Pool, Row};

use super::rules::{
    bump_in, decode_rule, delete_rule_in, insert_rule_in, select_rule_by_range, RULE_COLUMNS,
};
use super::{sql, Conn, Db, DbRow};
use crate::ranges::{Rule, RuleKind, RuleSource, Terms, CUSTOM_COUNTRY};
use crate::store::knock::{note_of, KnockRequest, Knocked, NOTE_PREFIX};
use crate::store::{is_unique_violation, query_err, KnockUser, StoreError};

/// The table, as named in errors.
const TABLE: &str = "knock_user";

/// The columns of a `knock_user` row, in the order [`decode_user`] expects them.
const USER_COLUMNS: &str = "name, token_hash, ttl_seconds, created_at, rotated_at";

/// Adds a user (see [`Store::add_knock_user`](crate::store::Store::add_knock_user)).
pub(in crate::store) async fn add_user(
    pool: &Pool<Db>,
    user: &KnockUser,
) -> Result<(), StoreError> {
    const CONTEXT: &str = "adding a knock user";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    if select_user(&mut tx, &user.name).await?.is_some() {
        return Err(StoreError::DuplicateUser {
            name: user.name.clone(),
        });
    }
    let text = format!("INSERT INTO {TABLE} ({USER_COLUMNS}) VALUES (?, ?, ?, ?, ?)");
    let done = sqlx::query(&sql(&text))
        .bind(&user.name)
        .bind(&user.token_hash)
        .bind(user.ttl_seconds)
        .bind(user.created_at)
        .bind(user.rotated_at)
        .execute(&mut *tx)
        .await;
    match done {
        Ok(_) => tx.commit().await.map_err(query_err(CONTEXT)),
        Err(e) if is_unique_violation(&e) => Err(StoreError::DuplicateUser {
            name: user.name.clone(),
        }),
        Err(e) => Err(StoreError::Query {
            context: CONTEXT,
            source: e,
        }),
    }
}

/// Every user, ordered by name (sorted here: the collations differ).
pub(in crate::store) async fn users(pool: &Pool<Db>) -> Result<Vec<KnockUser>, StoreError> {
    const CONTEXT: &str = "listing knock users";
    let rows = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM {TABLE}"))
        .fetch_all(pool)
        .await
        .map_err(query_err(CONTEXT))?;
    let mut users = rows
        .iter()
        .map(decode_user)
        .collect::<Result<Vec<_>, _>>()
        .map_err(query_err(CONTEXT))?;
    users.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(users)
}

/// The user with exactly this name.
pub(in crate::store) async fn user(
    pool: &Pool<Db>,
    name: &str,
) -> Result<Option<KnockUser>, StoreError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(query_err("looking up a knock user"))?;
    select_user(&mut conn, name).await
}

/// Replaces a user's token hash.
pub(in crate::store) async fn set_token(
    pool: &Pool<Db>,
    name: &str,
    token_hash: &str,
    now: i64,
) -> Result<KnockUser, StoreError> {
    const CONTEXT: &str = "rotating a knock token";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    let Some(mut user) = select_user(&mut tx, name).await? else {
        return Err(not_found(name));
    };
    let text = format!("UPDATE {TABLE} SET token_hash = ?, rotated_at = ? WHERE name = ?");
    sqlx::query(&sql(&text))
        .bind(token_hash)
        .bind(now)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    token_hash.clone_into(&mut user.token_hash);
    user.rotated_at = now;
    Ok(user)
}

/// Removes a user and their knock entries (bumping the generation).
pub(in crate::store) async fn remove_user(
    pool: &Pool<Db>,
    name: &str,
) -> Result<(KnockUser, Vec<Rule>), StoreError> {
    const CONTEXT: &str = "removing a knock user";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    bump_in(&mut tx).await?;
    let Some(user) = select_user(&mut tx, name).await? else {
        return Err(not_found(name));
    };
    let entries = knock_entries(&mut tx, name).await?;
    for rule in &entries {
        delete_rule_in(&mut tx, RuleKind::Permit, rule.id).await?;
    }
    sqlx::query(&sql(&format!("DELETE FROM {TABLE} WHERE name = ?")))
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(query_err(CONTEXT))?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok((user, entries))
}

/// The knock (see [`Store::knock`](crate::store::Store::knock)).
pub(in crate::store) async fn knock(
    pool: &Pool<Db>,
    request: KnockRequest<'_>,
) -> Result<Knocked, StoreError> {
    const CONTEXT: &str = "adding a knock entry";
    let mut tx = pool.begin().await.map_err(query_err(CONTEXT))?;
    // First, as in every policy change: the lock, before anything is read.
    let generation = bump_in(&mut tx).await?;
    let current = select_user(&mut tx, request.user).await?;
    if current.is_none_or(|u| u.token_hash != request.token_hash) {
        tx.rollback().await.map_err(query_err(CONTEXT))?;
        return Ok(Knocked::Gone);
    }
    let mut replaced = Vec::new();
    if let Some(existing) = select_rule_by_range(&mut tx, RuleKind::Permit, request.range).await? {
        let knocked =
            existing.note.starts_with(NOTE_PREFIX) && existing.source == RuleSource::Custom;
        if !knocked && !existing.terms.expired_at(request.now) {
            tx.rollback().await.map_err(query_err(CONTEXT))?;
            return Ok(Knocked::Keep(existing));
        }
        delete_rule_in(&mut tx, RuleKind::Permit, existing.id).await?;
        replaced.push(existing);
    }
    let mut active: Vec<Rule> = knock_entries(&mut tx, request.user)
        .await?
        .into_iter()
        .filter(|r| !r.terms.expired_at(request.now) && !replaced.iter().any(|x| x.id == r.id))
        .collect();
    // Oldest first (ids only grow): drop from the front until one more fits.
    while !active.is_empty() && active.len() >= request.cap.max(1) {
        let oldest = active.remove(0);
        delete_rule_in(&mut tx, RuleKind::Permit, oldest.id).await?;
        replaced.push(oldest);
    }
    let note = note_of(request.user);
    let terms = Terms {
        expires_at: Some(request.expires_at),
        shadow: false,
    };
    let id = insert_rule_in(
        &mut tx,
        RuleKind::Permit,
        request.range,
        CUSTOM_COUNTRY,
        RuleSource::Custom,
        &note,
        terms,
    )
    .await
    .map_err(query_err(CONTEXT))?;
    tx.commit().await.map_err(query_err(CONTEXT))?;
    Ok(Knocked::Add {
        rule: Rule {
            id,
            kind: RuleKind::Permit,
            range: request.range,
            country: CUSTOM_COUNTRY.to_owned(),
            source: RuleSource::Custom,
            note,
            terms,
        },
        replaced,
        generation,
    })
}

/// The permit entries noted `knock:<name>` (custom ones, exact note), oldest first.
async fn knock_entries(conn: &mut Conn, name: &str) -> Result<Vec<Rule>, StoreError> {
    let note = note_of(name);
    let text = format!("SELECT {RULE_COLUMNS} FROM permit WHERE note = ? ORDER BY id");
    let rows = sqlx::query(&sql(&text))
        .bind(&note)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("reading knock entries"))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let rule = decode_rule(RuleKind::Permit, row)?;
        // MariaDB's default collation ignores case: compare exactly here.
        if rule.note == note && rule.source == RuleSource::Custom {
            out.push(rule);
        }
    }
    Ok(out)
}

/// The user with exactly this name (checked in Rust: MariaDB's collation ignores case).
async fn select_user(conn: &mut Conn, name: &str) -> Result<Option<KnockUser>, StoreError> {
    const CONTEXT: &str = "looking up a knock user";
    let text = format!("SELECT {USER_COLUMNS} FROM {TABLE} WHERE name = ?");
    let rows = sqlx::query(&sql(&text))
        .bind(name)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err(CONTEXT))?;
    for row in &rows {
        let user = decode_user(row).map_err(query_err(CONTEXT))?;
        if user.name == name {
            return Ok(Some(user));
        }
    }
    Ok(None)
}

fn decode_user(row: &DbRow) -> Result<KnockUser, sqlx::Error> {
    Ok(KnockUser {
        name: row.try_get(0)?,
        token_hash: row.try_get(1)?,
        ttl_seconds: row.try_get(2)?,
        created_at: row.try_get(3)?,
        rotated_at: row.try_get(4)?,
    })
}

fn not_found(name: &str) -> StoreError {
    StoreError::NotFound {
        table: TABLE,
        what: name.to_owned(),
    }
}
