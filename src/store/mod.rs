//! The policy store: the `permit`, `deny` and `allow_host` tables and the generation counter,
//! over an sqlx pool. This is the only module in the crate that contains SQL.
//!
//! # Where it sits
//!
//! `cli` writes through [`Store`] (`add_rule`, `remove_rule`, `add_allow_host`, ...); `reload`
//! reads a consistent [`PolicyData`] with [`Store::load_policy`] and compiles it into a new
//! snapshot. `session` never sees the store. The country catalog and the `geolite` rules
//! generated from it ([`Store::import_catalog`], [`Store::refresh`],
//! [`Store::permit_countries`], ...) are in the `catalog` submodule, under the same rules.
//!
//! # Encoding and portability
//!
//! A range is stored as `family` (4 or 6) plus `start_ip` / `end_ip`, the big-endian bytes of
//! the addresses (4 bytes for IPv4, 16 for IPv6; see [`IpRange::start_bytes`]). Big-endian bytes
//! compare bytewise exactly like the integers they encode, so `ORDER BY family, start_ip` is
//! address order. SQLite compares BLOBs with `memcmp()`; the same encoding maps to
//! `VARBINARY(16)` on MariaDB and `BYTEA` on PostgreSQL, which also compare bytewise, so the
//! queries here carry over unchanged. Every value is a bound parameter; the only text spliced
//! into SQL is the table name from [`RuleKind::as_str`], a fixed `&'static str`. The SQL avoids
//! SQLite-only functions and `INSERT OR IGNORE`; it uses `INSERT ... RETURNING id`, which SQLite
//! ≥ 3.35, PostgreSQL and MariaDB ≥ 10.5 all support (MariaDB lacks `UPDATE ... RETURNING`, so
//! that is not used).
//!
//! # Generations and concurrency
//!
//! The `generation` table holds one counter. Every change (adding or removing a rule or an
//! allow host) bumps it in the same transaction as the change, and the bump is the
//! transaction's *first* statement: it takes the write lock up front (SQLite) or the row lock on
//! the counter (MariaDB/PostgreSQL), so concurrent writers, even from several servers sharing
//! one database, are serialized before they read anything. A failed change (duplicate, not
//! found) rolls back, bump included. Reads never bump. A reloader compares
//! [`Store::generation`] with the generation of its snapshot to see whether anything changed.
//!
//! [`Store::load_policy`] reads the generation and all tables in one transaction, which in
//! SQLite is one snapshot. (A PostgreSQL port must use `REPEATABLE READ` for the same
//! guarantee.)

mod catalog;
#[cfg(test)]
mod tests;

pub use catalog::{
    CatalogMeta, CatalogStatus, CountryDiff, CountryRow, CountryRules, ImportSummary, PermitReport,
    RefreshReport, UnpermitReport,
};

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::migrate::{MigrateError, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::ranges::{Family, IpRange, Rule, RuleKind, RuleSource};

/// The schema, embedded at build time.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another writer's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool of a file database.
const POOL_SIZE: u32 = 4;

/// The table of allowed host names, as named in errors.
const ALLOW_HOST_TABLE: &str = "allow_host";

/// The columns of a rule row, in the order [`decode_rule`] expects by name.
const RULE_COLUMNS: &str = "id, family, start_ip, end_ip, country_code, source, note";

/// A handle to the policy database. Cheap to clone (it wraps a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// One allowed host pattern: a lower-cased host name or `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowHost {
    /// Row id (`allow_host #3`); never reused.
    pub id: i64,
    /// The lower-cased host name or `*.`-prefixed wildcard.
    pub pattern: String,
    /// Free text from the admin.
    pub note: String,
    /// When the row was added, in Unix seconds.
    pub created_at: i64,
}

/// Everything the policy needs, read as one consistent snapshot by [`Store::load_policy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyData {
    /// The generation counter at the time of the read.
    pub generation: i64,
    /// All permit rules (ordered by family, start), then all deny rules (same order).
    pub rules: Vec<Rule>,
    /// All allowed host patterns, ordered by pattern.
    pub allow_hosts: Vec<AllowHost>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The table already has a rule with the same family, start and end.
    #[error("already in {}: {}", .existing.kind, RuleRef(.existing))]
    Duplicate {
        /// The rule already stored.
        existing: Rule,
    },
    /// The allow-host table already has this pattern.
    #[error("already in {ALLOW_HOST_TABLE}: {}", HostRef(.existing))]
    DuplicateHost {
        /// The row already stored.
        existing: AllowHost,
    },
    /// No row matched the id, range or pattern.
    #[error("not found in {table}: {what}")]
    NotFound {
        /// The table searched (`permit`, `deny`, `allow_host`).
        table: &'static str,
        /// What was looked for, as the user would write it (`#12`, `203.0.113.0/24`).
        what: String,
    },
    /// The database could not be opened (bad URL, missing directory, no permission, ...).
    #[error("cannot open database {url}")]
    Connect {
        /// The URL or path as given.
        url: String,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations failed (or the database was created by an incompatible version).
    #[error("cannot apply the database schema migrations")]
    Migrate(#[source] MigrateError),
    /// A query failed.
    #[error("database error while {context}")]
    Query {
        /// What the store was doing, e.g. `adding a rule`.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored row cannot be decoded (bad family, bytes, source or column type).
    #[error("corrupt row #{id} in {table}: {why}")]
    Corrupt {
        /// The table holding the row.
        table: &'static str,
        /// The row's id.
        id: i64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Country codes that are not in the catalog (`country add XX`); nothing was written.
    #[error("unknown country code{}: {} (not in the catalog; see `ipcountry countries`)", plural(.codes), .codes.join(", "))]
    UnknownCountries {
        /// The unknown codes, upper-cased, in the order given.
        codes: Vec<String>,
    },
    /// No country catalog has been imported yet.
    #[error("no country catalog has been imported yet (ipcountry import FILE)")]
    NoCatalog,
    /// The catalog to import has no ranges at all.
    #[error("the catalog has no country ranges; nothing was imported")]
    EmptyCatalog,
    /// The catalog to import is malformed (e.g. a country code that is not two letters).
    #[error("invalid catalog: {why}")]
    InvalidCatalog {
        /// What is wrong with it.
        why: String,
    },
    /// Permitted countries are missing from the new catalog; importing it would drop their
    /// rules and turn their callers into strangers. Nothing was written.
    #[error(
        "the new catalog lacks the permitted countr{} {}: nothing changed \
         (run `ipcountry country rm {}` first if that is intended)",
        if .codes.len() == 1 { "y" } else { "ies" }, .codes.join(", "), .codes.join(" ")
    )]
    MissingCountries {
        /// The permitted codes the new catalog lacks.
        codes: Vec<String>,
    },
    /// A stored catalog row cannot be decoded.
    #[error("corrupt catalog row for country {country}: {why}")]
    CorruptCatalog {
        /// The row's country code.
        country: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// `"s"` when there are several codes.
fn plural(codes: &[String]) -> &'static str {
    if codes.len() == 1 {
        ""
    } else {
        "s"
    }
}

impl Store {
    /// Opens (creating if missing) the database at `url` and applies pending migrations.
    ///
    /// `url` is an sqlx SQLite URL (`sqlite://ipcountry.db`, `sqlite:///var/lib/x.db`,
    /// `sqlite::memory:`) or, if it does not start with `sqlite:` and has no `://`, a plain file
    /// path (`./ipcountry.db`). File databases use WAL journaling, so several processes can
    /// share one file; every connection waits up to 5 s for another writer's lock. An in-memory
    /// database lives in a single pooled connection that is never recycled.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let connect_err = |source| StoreError::Connect {
            url: url.to_owned(),
            source,
        };
        let (options, in_memory) = connect_options(url).map_err(connect_err)?;
        let pool_options = if in_memory {
            // Each connection to `sqlite::memory:` would otherwise risk a fresh, empty database
            // once the last one closes: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(POOL_SIZE)
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Store { pool })
    }

    /// Adds a rule to the `kind` table and returns it with its new id.
    ///
    /// A rule with the same family, start and end already in that table is
    /// [`StoreError::Duplicate`] (detected by a lookup inside the transaction, and also when a
    /// concurrent writer wins the race to the unique constraint).
    pub async fn add_rule(
        &self,
        kind: RuleKind,
        range: IpRange,
        country: &str,
        source: RuleSource,
        note: &str,
    ) -> Result<Rule, StoreError> {
        const CONTEXT: &str = "adding a rule";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        bump_in(&mut tx).await?;
        if let Some(existing) = select_rule_by_range(&mut tx, kind, range).await? {
            return Err(StoreError::Duplicate { existing });
        }
        let sql = format!(
            "INSERT INTO {} (family, start_ip, end_ip, country_code, source, note, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            kind.as_str()
        );
        let inserted = sqlx::query_scalar::<_, i64>(&sql)
            .bind(range.family().number())
            .bind(range.start_bytes())
            .bind(range.end_bytes())
            .bind(country)
            .bind(source.as_str())
            .bind(note)
            .bind(now_unix())
            .fetch_one(&mut *tx)
            .await;
        let winner = self.find_rule(kind, range);
        let duplicate = |existing| StoreError::Duplicate { existing };
        let id = commit_insert(tx, inserted, CONTEXT, winner, duplicate).await?;
        Ok(Rule {
            id,
            kind,
            range,
            country: country.to_owned(),
            source,
            note: note.to_owned(),
        })
    }

    /// Removes rule `#id` from the `kind` table and returns it.
    pub async fn remove_rule(&self, kind: RuleKind, id: i64) -> Result<Rule, StoreError> {
        const CONTEXT: &str = "removing a rule";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        bump_in(&mut tx).await?;
        let sql = format!("SELECT {RULE_COLUMNS} FROM {} WHERE id = ?", kind.as_str());
        let row = sqlx::query(&sql)
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

    /// Removes the rule with exactly this range from the `kind` table and returns it.
    pub async fn remove_rule_by_range(
        &self,
        kind: RuleKind,
        range: IpRange,
    ) -> Result<Rule, StoreError> {
        const CONTEXT: &str = "removing a rule";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
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

    /// All rules of the `kind` table, ordered by family (IPv4 first), then start, then end.
    pub async fn list_rules(&self, kind: RuleKind) -> Result<Vec<Rule>, StoreError> {
        let mut conn = self.acquire("listing rules").await?;
        select_rules(&mut conn, kind).await
    }

    /// The rule of the `kind` table with exactly this range, if any.
    async fn find_rule(&self, kind: RuleKind, range: IpRange) -> Result<Option<Rule>, StoreError> {
        let mut conn = self.acquire("looking up a rule").await?;
        select_rule_by_range(&mut conn, kind, range).await
    }

    /// Adds an allowed host pattern. The caller has validated and lower-cased it; an existing
    /// identical pattern is [`StoreError::DuplicateHost`].
    pub async fn add_allow_host(&self, pattern: &str, note: &str) -> Result<AllowHost, StoreError> {
        const CONTEXT: &str = "adding an allowed host";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        bump_in(&mut tx).await?;
        if let Some(existing) = select_host_by_pattern(&mut tx, pattern).await? {
            return Err(StoreError::DuplicateHost { existing });
        }
        let created_at = now_unix();
        let inserted = sqlx::query_scalar::<_, i64>(
            "INSERT INTO allow_host (pattern, note, created_at) VALUES (?, ?, ?) RETURNING id",
        )
        .bind(pattern)
        .bind(note)
        .bind(created_at)
        .fetch_one(&mut *tx)
        .await;
        let winner = async {
            let mut conn = self.acquire(CONTEXT).await?;
            select_host_by_pattern(&mut conn, pattern).await
        };
        let duplicate = |existing| StoreError::DuplicateHost { existing };
        let id = commit_insert(tx, inserted, CONTEXT, winner, duplicate).await?;
        Ok(AllowHost {
            id,
            pattern: pattern.to_owned(),
            note: note.to_owned(),
            created_at,
        })
    }

    /// Removes an allowed host, named by its exact pattern or by its id (`3` or `#3`). An exact
    /// pattern match wins over an id.
    pub async fn remove_allow_host(&self, pattern_or_id: &str) -> Result<AllowHost, StoreError> {
        const CONTEXT: &str = "removing an allowed host";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        bump_in(&mut tx).await?;
        let mut found = select_host_by_pattern(&mut tx, pattern_or_id).await?;
        if found.is_none() {
            if let Ok(id) = pattern_or_id
                .strip_prefix('#')
                .unwrap_or(pattern_or_id)
                .parse::<i64>()
            {
                let row = sqlx::query(
                    "SELECT id, pattern, note, created_at FROM allow_host WHERE id = ?",
                )
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
        sqlx::query("DELETE FROM allow_host WHERE id = ?")
            .bind(host.id)
            .execute(&mut *tx)
            .await
            .map_err(query_err(CONTEXT))?;
        tx.commit().await.map_err(query_err(CONTEXT))?;
        Ok(host)
    }

    /// All allowed host patterns, ordered by pattern.
    pub async fn list_allow_hosts(&self) -> Result<Vec<AllowHost>, StoreError> {
        let mut conn = self.acquire("listing allowed hosts").await?;
        select_hosts(&mut conn).await
    }

    /// The current generation: it changes whenever any rule or allowed host does.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        let mut conn = self.acquire("reading the generation").await?;
        read_generation(&mut conn).await
    }

    /// Bumps the generation without changing anything else (`ipcountry reload`), returning the
    /// new value.
    pub async fn bump_generation(&self) -> Result<i64, StoreError> {
        const CONTEXT: &str = "bumping the generation";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
        let generation = bump_in(&mut tx).await?;
        tx.commit().await.map_err(query_err(CONTEXT))?;
        Ok(generation)
    }

    /// The generation, all permit and deny rules and all allowed hosts, read in one transaction
    /// so they form one consistent snapshot. Any undecodable row fails the whole load, so a
    /// reloader keeps its previous policy rather than running a partial one.
    pub async fn load_policy(&self) -> Result<PolicyData, StoreError> {
        const CONTEXT: &str = "loading the policy";
        let mut tx = self.pool.begin().await.map_err(query_err(CONTEXT))?;
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

    /// A connection from the pool, or a query error naming `context`.
    async fn acquire(&self, context: &'static str) -> Result<PoolConnection<Sqlite>, StoreError> {
        self.pool.acquire().await.map_err(query_err(context))
    }

    /// Closes the pool, waiting for checked-out connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Connection options for `url`, and whether it names an in-memory database.
fn connect_options(url: &str) -> Result<(SqliteConnectOptions, bool), sqlx::Error> {
    let (options, in_memory) = if url.starts_with("sqlite:") {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        (SqliteConnectOptions::from_str(url)?, in_memory)
    } else if url.contains("://") {
        return Err(sqlx::Error::Configuration(
            "unsupported database URL scheme (this build supports sqlite: URLs and file paths)"
                .into(),
        ));
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

/// Bumps the generation inside a transaction and returns the new value. Called first in every
/// write transaction, so it also takes the write lock before anything is read.
async fn bump_in(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    const CONTEXT: &str = "bumping the generation";
    let done = sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await
        .map_err(query_err(CONTEXT))?;
    if done.rows_affected() != 1 {
        return Err(missing_generation());
    }
    read_generation(conn).await
}

/// The current generation counter.
async fn read_generation(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT value FROM generation WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err("reading the generation"))?;
    let row = row.ok_or_else(missing_generation)?;
    row.try_get::<i64, _>("value")
        .map_err(|_| StoreError::Corrupt {
            table: "generation",
            id: 1,
            why: "the counter is not an integer",
        })
}

/// The error for a database whose `generation` row has gone.
fn missing_generation() -> StoreError {
    StoreError::Corrupt {
        table: "generation",
        id: 1,
        why: "the generation row is missing",
    }
}

/// All rules of one table, in address order.
async fn select_rules(
    conn: &mut SqliteConnection,
    kind: RuleKind,
) -> Result<Vec<Rule>, StoreError> {
    let order = " ORDER BY family, start_ip, end_ip, id";
    every_rule(conn, kind, order, "listing rules").await
}

/// Every rule of one table, in no particular order (see [`Store::load_policy`]).
async fn scan_rules(conn: &mut SqliteConnection, kind: RuleKind) -> Result<Vec<Rule>, StoreError> {
    every_rule(conn, kind, "", "loading rules").await
}

/// Every rule of one table, decoded, in the order the `order` clause (or none) gives.
async fn every_rule(
    conn: &mut SqliteConnection,
    kind: RuleKind,
    order: &str,
    context: &'static str,
) -> Result<Vec<Rule>, StoreError> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM {}{order}", kind.as_str());
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err(context))?;
    rows.iter().map(|row| decode_rule(kind, row)).collect()
}

/// The rule of one table with exactly this range.
async fn select_rule_by_range(
    conn: &mut SqliteConnection,
    kind: RuleKind,
    range: IpRange,
) -> Result<Option<Rule>, StoreError> {
    let sql = format!(
        "SELECT {RULE_COLUMNS} FROM {} WHERE family = ? AND start_ip = ? AND end_ip = ?",
        kind.as_str()
    );
    let row = sqlx::query(&sql)
        .bind(range.family().number())
        .bind(range.start_bytes())
        .bind(range.end_bytes())
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err("looking up a rule"))?;
    row.as_ref().map(|row| decode_rule(kind, row)).transpose()
}

/// Deletes rule `id` of one table.
async fn delete_rule_in(
    conn: &mut SqliteConnection,
    kind: RuleKind,
    id: i64,
) -> Result<(), StoreError> {
    let sql = format!("DELETE FROM {} WHERE id = ?", kind.as_str());
    sqlx::query(&sql)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(query_err("removing a rule"))?;
    Ok(())
}

/// All allowed hosts, ordered by pattern.
async fn select_hosts(conn: &mut SqliteConnection) -> Result<Vec<AllowHost>, StoreError> {
    let rows = sqlx::query("SELECT id, pattern, note, created_at FROM allow_host ORDER BY pattern")
        .fetch_all(&mut *conn)
        .await
        .map_err(query_err("listing allowed hosts"))?;
    rows.iter().map(decode_host).collect()
}

/// The allowed host with exactly this pattern.
async fn select_host_by_pattern(
    conn: &mut SqliteConnection,
    pattern: &str,
) -> Result<Option<AllowHost>, StoreError> {
    let row = sqlx::query("SELECT id, pattern, note, created_at FROM allow_host WHERE pattern = ?")
        .bind(pattern)
        .fetch_optional(&mut *conn)
        .await
        .map_err(query_err("looking up an allowed host"))?;
    row.as_ref().map(decode_host).transpose()
}

/// Decodes a row of [`RULE_COLUMNS`]; anything malformed is [`StoreError::Corrupt`].
fn decode_rule(kind: RuleKind, row: &SqliteRow) -> Result<Rule, StoreError> {
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
    Ok(Rule {
        id,
        kind,
        range,
        country,
        source,
        note,
    })
}

/// Decodes the `family`, `start_ip`, `end_ip` columns at positions `first`, `first + 1` and
/// `first + 2` (by position and borrowed: this runs for every rule and catalog row read);
/// anything malformed is the error `corrupt` makes of the reason.
fn decode_range(
    row: &SqliteRow,
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

/// Decodes an `allow_host` row; anything malformed is [`StoreError::Corrupt`].
fn decode_host(row: &SqliteRow) -> Result<AllowHost, StoreError> {
    let id: i64 = row.try_get("id").map_err(|source| StoreError::Query {
        context: "reading an allowed host id",
        source,
    })?;
    let corrupt = |why| StoreError::Corrupt {
        table: ALLOW_HOST_TABLE,
        id,
        why,
    };
    let pattern: String = row
        .try_get("pattern")
        .map_err(|_| corrupt("pattern is not text"))?;
    let note: String = row
        .try_get("note")
        .map_err(|_| corrupt("note is not text"))?;
    let created_at: i64 = row
        .try_get("created_at")
        .map_err(|_| corrupt("created_at is not an integer"))?;
    Ok(AllowHost {
        id,
        pattern,
        note,
        created_at,
    })
}

/// Maps an sqlx error to [`StoreError::Query`] with `context`.
fn query_err(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { context, source }
}

/// Whether `e` is a unique-constraint violation (a concurrent duplicate insert).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Commits `tx` after its `INSERT ... RETURNING id` gave `inserted`, and returns the new id.
///
/// If the insert failed, `tx` is dropped (rolled back) first: PostgreSQL would refuse further
/// statements in it. A unique-constraint violation means a concurrent writer stored the same
/// row first: `winner`, awaited only then and outside the failed transaction, finds that row,
/// and `duplicate` reports it. Anything else is a query error.
async fn commit_insert<T>(
    tx: Transaction<'_, Sqlite>,
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

/// Now, in Unix seconds (0 if the clock is before 1970).
fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A rule as named in a duplicate message: `#12 203.0.113.0/24 "office"`, with the source and
/// country for rules that are not custom (`#40 8.8.0.0/14 geolite US`).
struct RuleRef<'a>(&'a Rule);

impl fmt::Display for RuleRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rule = self.0;
        write!(f, "#{} {}", rule.id, rule.range)?;
        if rule.source != RuleSource::Custom {
            write!(f, " {} {}", rule.source, rule.country)?;
        }
        if !rule.note.is_empty() {
            write!(f, " {:?}", rule.note)?;
        }
        Ok(())
    }
}

/// An allowed host as named in a duplicate message: `#3 *.example.com "pbx vendor"`.
struct HostRef<'a>(&'a AllowHost);

impl fmt::Display for HostRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.0;
        write!(f, "#{} {}", host.id, host.pattern)?;
        if !host.note.is_empty() {
            write!(f, " {:?}", host.note)?;
        }
        Ok(())
    }
}
