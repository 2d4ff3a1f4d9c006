//! The policy store: the `permit`, `deny` and `allow_host` tables, the generation counter, the
//! country catalog, the registry of running servers and the knock page's users (`knock`), on
//! SQLite (embedded, the default),
//! MariaDB/MySQL or PostgreSQL. This is the only module in the crate that contains SQL.
//!
//! # Where it sits
//!
//! `cli` writes through [`Store`] (`add_rule`, `remove_rule`, `add_allow_host`, ...); `reload`
//! reads a consistent [`PolicyData`] with [`Store::load_policy`] and compiles it into a new
//! snapshot, which it also keeps on disk ([`cache`]) for a restart while the database is down.
//! `session` never sees the store. The country catalog and the `geolite` rules generated from
//! it ([`Store::import_catalog`], [`Store::refresh`], [`Store::permit_countries`], ...) are in
//! the `catalog` submodule, under the same rules. On PostgreSQL, [`Store::listen`] gives the
//! change announcements servers wait on besides polling. Running servers keep a row each in
//! the `server` table (`servers`: [`Store::register_server`], [`Store::servers`], ...), which
//! never bumps the generation.
//!
//! # One code path for three backends
//!
//! The URL picks the backend ([`Backend::of`]): `sqlite://…` or a plain path, `mysql://…` or
//! `mariadb://…`, `postgres://…`. The SQL is written once, in `sql/rules.rs`,
//! `sql/catalog.rs`, `sql/servers.rs`, `sql/peers.rs` (what `watch` remembers) and
//! `sql/knock.rs` (the knock page's users and its write to `permit`), and compiled
//! for each backend: `sqlite.rs`, `mysql.rs` and
//! `postgres.rs` each include those files as their own modules (`#[path]`) over their own
//! `Db`, connection and row types, and give the few things that differ (placeholders, how a new
//! id comes back, the first statement of a read snapshot, change notification, connection
//! options, the migrations). [`Store`] holds one pool of the three and dispatches every call
//! with one `match` (`on_pool!`). Why not the alternatives:
//!
//! - sqlx's `Any` driver maps MariaDB's column types by protocol type alone, so `VARBINARY`
//!   arrives as text (addresses fail UTF-8 decoding) and `TEXT` as a blob; its options come
//!   from the URL only (no WAL, busy timeout or row buffer for SQLite); and it does not
//!   translate placeholders either.
//! - Functions generic over `DB: sqlx::Database` need the executor and every bound type's
//!   `Encode`/`Decode`/`Type` bounds restated on each function (they are not implied): a dozen
//!   lines of bounds on every one of some forty functions, for the same compiled result.
//!
//! # Encoding and portability
//!
//! A range is stored as `family` (4 or 6) plus `start_ip` / `end_ip`, the big-endian bytes of
//! the addresses (4 bytes for IPv4, 16 for IPv6; see [`IpRange::start_bytes`]). Big-endian bytes
//! compare bytewise exactly like the integers they encode, so `ORDER BY family, start_ip` is
//! address order: SQLite compares BLOBs with `memcmp()`, MariaDB/MySQL compare `VARBINARY(16)`
//! and PostgreSQL `BYTEA` byte by byte, with no collation and no padding (the tests check the
//! order across all sixteen bytes on each backend). Integers are `BIGINT` everywhere. Text
//! comparisons that must be exact (allowed host patterns) are checked again in Rust, and text is
//! sorted in Rust, since the servers' collations differ (MariaDB's default ignores case).
//! Every value is a bound parameter; the only text spliced into SQL is the table name from
//! [`RuleKind::as_str`], a fixed `&'static str` (and, in the test support, a generated database
//! name of `[a-z0-9_]`). New ids come from `INSERT ... RETURNING id` (SQLite ≥ 3.35,
//! PostgreSQL) or the protocol's last-insert-id (MariaDB/MySQL: MySQL 8 has no `RETURNING`).
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
//! [`Store::load_policy`] reads the generation and all tables in one transaction that reads one
//! snapshot: SQLite's read transaction in WAL mode, InnoDB's `REPEATABLE READ` (set on every
//! MariaDB connection), PostgreSQL's `REPEATABLE READ, READ ONLY` (set per read transaction;
//! writers stay in `READ COMMITTED`, so after the bump's lock they see every earlier commit).
//!
//! # Pools
//!
//! [`PoolSettings`]: a few connections suffice (a CLI command uses one, a server one for its
//! polls and reloads, plus the PostgreSQL listener's own); the acquire timeout bounds how long
//! a call waits for a server that went away before it fails.

mod catalog;
mod mysql;
mod postgres;
mod sqlite;

pub mod cache;
mod error;
pub mod freepbx;
pub mod knock;
mod listen;
mod mark;
mod peers;
mod servers;
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
mod url;

pub use catalog::{
    CatalogMeta, CatalogStatus, CountryDiff, CountryRow, CountryRules, ImportSummary, PermitReport,
    RefreshReport, UnpermitReport,
};
pub use error::StoreError;
use error::{is_connection_error, is_unique_violation, missing_generation, query_err};
pub use knock::{KnockRequest, KnockUser, Knocked};
pub use listen::{Change, Changes};
pub use mark::ChangeMark;
pub use peers::SeenPeer;
pub use servers::{ServerRow, MAX_HEARTBEAT, PRUNE_AFTER, STALE_AFTER};
pub use url::redact_url;

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sqlx::migrate::MigrateError;
use sqlx::{MySqlPool, PgPool, SqlitePool};

use crate::ranges::{IpRange, Rule, RuleKind, RuleSource, Terms};

/// Calls the function of the same name in the store's backend module (`sqlite`, `mysql`,
/// `postgres`), with the backend's pool as its first argument, and awaits it.
macro_rules! on_pool {
    ($store:expr, $module:ident :: $function:ident ( $($arg:expr),* $(,)? )) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite(pool) => {
                $crate::store::sqlite::$module::$function(pool, $($arg),*).await
            }
            $crate::store::Pool::MySql(pool) => {
                $crate::store::mysql::$module::$function(pool, $($arg),*).await
            }
            $crate::store::Pool::Postgres(pool) => {
                $crate::store::postgres::$module::$function(pool, $($arg),*).await
            }
        }
    };
}
pub(crate) use on_pool;

/// The table of allowed host names, as named in errors.
const ALLOW_HOST_TABLE: &str = "allow_host";

/// A handle to the policy database. Cheap to clone (it wraps a connection pool).
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The URL, without its password, for messages.
    url: String,
    /// A SQLite file's files, for [`Store::change_mark`].
    marked: Option<mark::MarkedFiles>,
}

/// The pool of one backend.
#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    MySql(MySqlPool),
    Postgres(PgPool),
}

/// Which database server a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// SQLite, embedded: `sqlite://path.db`, `sqlite::memory:` or a plain path.
    Sqlite,
    /// MariaDB or MySQL: `mysql://user:password@host/database` (or `mariadb://`).
    MySql,
    /// PostgreSQL: `postgres://user:password@host/database` (or `postgresql://`).
    Postgres,
}

impl Backend {
    /// The backend `url` names, or [`StoreError::Connect`] for an unknown scheme or an empty
    /// path.
    pub fn of(url: &str) -> Result<Backend, StoreError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            _ if url.starts_with("sqlite:") => Ok(Backend::Sqlite),
            Some("mysql" | "mariadb") => Ok(Backend::MySql),
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            Some(_) => Err(StoreError::Connect {
                url: redact_url(url),
                error: sqlx::Error::Configuration(
                    "unsupported database URL scheme (use sqlite://, mysql://, mariadb:// or \
                     postgres://, or a plain SQLite file path)"
                        .into(),
                ),
            }),
            None if url.is_empty() => Err(StoreError::Connect {
                url: String::new(),
                error: sqlx::Error::Configuration("empty database path".into()),
            }),
            None => Ok(Backend::Sqlite),
        }
    }

    /// `sqlite`, `mysql`, `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MySql => "mysql",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::MySql => "MariaDB/MySQL",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// How a [`Store`]'s connection pool is sized. (An in-memory SQLite database always has
/// exactly one connection.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections the pool opens at most.
    pub max_connections: u32,
    /// How long a call waits for a connection, opening one included, before it fails.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    /// 4 connections, 5 s.
    fn default() -> Self {
        PoolSettings {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// One allowed host pattern: a lower-cased host name or `*.example.com`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowHost {
    /// Row id (`allow_host #3`); never reused.
    pub id: i64,
    /// The lower-cased host name or `*.`-prefixed wildcard.
    pub pattern: String,
    /// Free text from the admin.
    pub note: String,
    /// When the row was added, in Unix seconds.
    pub created_at: i64,
    /// When it stops matching, in Unix seconds; `None` for never (and in snapshot caches
    /// written before entries could expire).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// What [`Store::purge_expired`] deleted, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Expired permit rules.
    pub permit: u64,
    /// Expired deny rules.
    pub deny: u64,
    /// Expired allowed hosts.
    pub allow_hosts: u64,
}

impl Purged {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.permit + self.deny + self.allow_hosts
    }
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

impl Store {
    /// Opens (creating if missing, for SQLite) the database at `url` with the default
    /// [`PoolSettings`] and applies pending migrations. See [`Store::open_with`].
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &PoolSettings::default()).await
    }

    /// Opens the database at `url` and applies pending migrations (each backend has its own,
    /// embedded at build time; several processes may start at once: they take turns under a
    /// lock: PostgreSQL's advisory lock (sqlx's migrator), a `GET_LOCK` on MariaDB/MySQL
    /// (`mysql::migrate`), the write lock on SQLite (`sqlite::migrate`)).
    ///
    /// `url` is an sqlx SQLite URL (`sqlite://ipcountry.db`, `sqlite:///var/lib/x.db`,
    /// `sqlite::memory:`), a plain SQLite file path (`./ipcountry.db`), a MariaDB/MySQL URL
    /// (`mysql://user:password@host/database`, `mariadb://…`) or a PostgreSQL one
    /// (`postgres://user:password@host/database`). SQLite files are created if missing and use
    /// WAL journaling, so several processes can share one file; a server database must exist.
    /// A server that cannot be reached or refuses the login is [`StoreError::Connect`], naming
    /// the URL without its password.
    pub async fn open_with(url: &str, settings: &PoolSettings) -> Result<Store, StoreError> {
        let backend = Backend::of(url)?;
        let shown = redact_url(url);
        let connect_err = |error| StoreError::Connect {
            url: shown.clone(),
            error,
        };
        let pool = match backend {
            Backend::Sqlite => {
                Pool::Sqlite(sqlite::connect(url, settings).await.map_err(connect_err)?)
            }
            Backend::MySql => {
                Pool::MySql(mysql::connect(url, settings).await.map_err(connect_err)?)
            }
            Backend::Postgres => Pool::Postgres(
                postgres::connect(url, settings)
                    .await
                    .map_err(connect_err)?,
            ),
        };
        let migrated = match &pool {
            Pool::Sqlite(p) => sqlite::migrate(p).await,
            Pool::MySql(p) => mysql::migrate(p).await,
            Pool::Postgres(p) => postgres::MIGRATOR.run(p).await,
        };
        if let Err(e) = migrated {
            return Err(match e {
                MigrateError::Execute(source) if is_connection_error(&source) => {
                    connect_err(source)
                }
                e => StoreError::Migrate(e),
            });
        }
        let marked = match backend {
            Backend::Sqlite => sqlite::file_path(url).map(|p| mark::MarkedFiles::new(&p)),
            Backend::MySql | Backend::Postgres => None,
        };
        Ok(Store {
            pool,
            url: shown,
            marked,
        })
    }

    /// The backend this store talks to.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::MySql(_) => Backend::MySql,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The database URL without its password, for messages and logs.
    pub fn url(&self) -> &str {
        &self.url
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
        terms: Terms,
    ) -> Result<Rule, StoreError> {
        on_pool!(
            self,
            rules::add_rule(kind, range, country, source, note, terms)
        )
    }

    /// Removes rule `#id` from the `kind` table and returns it.
    pub async fn remove_rule(&self, kind: RuleKind, id: i64) -> Result<Rule, StoreError> {
        on_pool!(self, rules::remove_rule(kind, id))
    }

    /// Removes the rule with exactly this range from the `kind` table and returns it.
    pub async fn remove_rule_by_range(
        &self,
        kind: RuleKind,
        range: IpRange,
    ) -> Result<Rule, StoreError> {
        on_pool!(self, rules::remove_rule_by_range(kind, range))
    }

    /// All rules of the `kind` table, ordered by family (IPv4 first), then start, then end.
    pub async fn list_rules(&self, kind: RuleKind) -> Result<Vec<Rule>, StoreError> {
        on_pool!(self, rules::list_rules(kind))
    }

    /// The rule of the `kind` table with exactly this range, if any.
    #[cfg(test)]
    async fn find_rule(&self, kind: RuleKind, range: IpRange) -> Result<Option<Rule>, StoreError> {
        on_pool!(self, rules::find_rule(kind, range))
    }

    /// Adds an allowed host pattern, expiring at `expires_at` (Unix seconds) if given. The
    /// caller has validated and lower-cased it; an existing identical pattern is
    /// [`StoreError::DuplicateHost`].
    pub async fn add_allow_host(
        &self,
        pattern: &str,
        note: &str,
        expires_at: Option<i64>,
    ) -> Result<AllowHost, StoreError> {
        on_pool!(self, rules::add_allow_host(pattern, note, expires_at))
    }

    /// Deletes every rule and allowed host that expired by `now` (Unix seconds), in one
    /// transaction; the generation changes only when something was deleted.
    pub async fn purge_expired(&self, now: i64) -> Result<Purged, StoreError> {
        on_pool!(self, rules::purge_expired(now))
    }

    /// Removes an allowed host, named by its exact pattern or by its id (`3` or `#3`). An exact
    /// pattern match wins over an id.
    pub async fn remove_allow_host(&self, pattern_or_id: &str) -> Result<AllowHost, StoreError> {
        on_pool!(self, rules::remove_allow_host(pattern_or_id))
    }

    /// All allowed host patterns, ordered by pattern.
    pub async fn list_allow_hosts(&self) -> Result<Vec<AllowHost>, StoreError> {
        on_pool!(self, rules::list_allow_hosts())
    }

    /// The current generation: it changes whenever any rule or allowed host does.
    pub async fn generation(&self) -> Result<i64, StoreError> {
        on_pool!(self, rules::generation())
    }

    /// Bumps the generation without changing anything else (`ipcountry reload`), returning the
    /// new value.
    pub async fn bump_generation(&self) -> Result<i64, StoreError> {
        on_pool!(self, rules::bump_generation())
    }

    /// The generation, all permit and deny rules and all allowed hosts, read in one transaction
    /// so they form one consistent snapshot. Any undecodable row fails the whole load, so a
    /// reloader keeps its previous policy rather than running a partial one.
    pub async fn load_policy(&self) -> Result<PolicyData, StoreError> {
        on_pool!(self, rules::load_policy())
    }

    /// The change announcements of this database, where it makes them (PostgreSQL:
    /// `LISTEN`/`NOTIFY`, one announcement per committed change); `None` on SQLite and
    /// MariaDB, whose servers rely on polling the generation alone.
    pub async fn listen(&self) -> Result<Option<Changes>, StoreError> {
        match &self.pool {
            Pool::Postgres(pool) => Changes::connect(pool).await.map(Some),
            Pool::Sqlite(_) | Pool::MySql(_) => Ok(None),
        }
    }

    /// A mark that moves with every commit to the database, by any process, read without a
    /// query (a SQLite file: `stat` of it and its `-wal`, see `mark.rs`), for an idle poll
    /// (issue 18). Take it before the query whose answer it stands for. `None` where there is
    /// no such mark (MariaDB, PostgreSQL, in memory): then only a query says.
    pub fn change_mark(&self) -> Option<ChangeMark> {
        self.marked.as_ref().map(|f| f.mark(SystemTime::now()))
    }

    /// Closes the pool, waiting for checked-out connections to be returned.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::MySql(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

impl fmt::Debug for Store {
    /// The backend and the URL without its password (never the connect options, which hold it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.url)
            .finish()
    }
}

/// Opens one connection with `options` and closes it again, within the acquire timeout: an
/// unreachable server or a refused login is then reported as what it is (a pool keeps retrying
/// until its timeout and reports only that).
async fn probe<O>(options: &O, settings: &PoolSettings) -> Result<(), sqlx::Error>
where
    O: sqlx::ConnectOptions,
    O::Connection: Sized,
{
    use sqlx::Connection as _;
    match tokio::time::timeout(settings.acquire_timeout, options.connect()).await {
        Ok(Ok(conn)) => {
            // Closing politely is best effort; the connection is gone either way.
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no answer within {}",
                humantime::format_duration(settings.acquire_timeout)
            ),
        ))),
    }
}

/// When an entry that lasts `lasts` from now expires, in Unix seconds: rounded up to the whole
/// second, so that it lasts at least `lasts` (and less than a second more; expiry is checked in
/// whole seconds). `None` past the range of the column.
pub fn expiry_after(lasts: Duration) -> Option<i64> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let at = now.checked_add(lasts)?;
    i64::try_from(at.as_secs() + u64::from(at.subsec_nanos() > 0)).ok()
}

/// Now, in Unix seconds (0 if the clock is before 1970).
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
