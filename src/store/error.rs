//! Why a store operation failed ([`StoreError`]), and the sqlx errors behind it sorted into
//! what a person or a caller can act on: a duplicate, something not found, a database that
//! cannot be reached, a corrupt row.

use std::fmt;

use sqlx::migrate::MigrateError;

use super::{now_unix, AllowHost, ALLOW_HOST_TABLE};
use crate::ranges::{Rule, RuleSource};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The table already has a rule with the same family, start and end.
    #[error("already in {}: {}", .existing.kind, RuleRef(.existing))]
    Duplicate {
        /// The rule already stored (boxed: it is large, and errors travel far).
        existing: Box<Rule>,
    },
    /// The allow-host table already has this pattern.
    #[error("already in {ALLOW_HOST_TABLE}: {}", HostRef(.existing))]
    DuplicateHost {
        /// The row already stored.
        existing: AllowHost,
    },
    /// A knock user of this name exists already (`knock-user add`).
    #[error("already a knock user: {name}")]
    DuplicateUser {
        /// The name.
        name: String,
    },
    /// No row matched the id, range or pattern.
    #[error("not found in {table}: {what}")]
    NotFound {
        /// The table searched (`permit`, `deny`, `allow_host`).
        table: &'static str,
        /// What was looked for, as the user would write it (`#12`, `203.0.113.0/24`).
        what: String,
    },
    /// The database could not be opened: a bad URL, a missing directory or no permission
    /// (SQLite), a server that cannot be reached or refuses the login (MariaDB, PostgreSQL).
    #[error("cannot open database {url}: {}", connect_reason(.error))]
    Connect {
        /// The URL or path as given, without its password.
        url: String,
        /// The underlying error (its text is in the message; it is not chained, so that the
        /// server's message is not printed twice).
        error: sqlx::Error,
    },
    /// The schema migrations failed (or the database was created by an incompatible version).
    #[error("cannot apply the database schema migrations")]
    Migrate(#[source] MigrateError),
    /// A query failed.
    #[error("database error while {context}{}", hint_of(source).map(|h| format!(" ({h})")).unwrap_or_default())]
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

/// Why a connection failed, in one line for a person: the server's own message for a refused
/// login, the system's for a refused or timed-out connection (never the URL: the caller names
/// it, without its password).
fn connect_reason(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match hint_of(e) {
            Some(hint) => format!("{} ({hint})", db.message()),
            None => db.message().to_owned(),
        },
        sqlx::Error::Io(io) => format!("cannot reach the server: {io}"),
        sqlx::Error::PoolTimedOut => "no connection within the timeout".to_owned(),
        sqlx::Error::Configuration(c) => format!("bad database URL or path: {c}"),
        other => other.to_string(),
    }
}

/// What an SQLite error usually means on a PBX ([`sqlite_hint`]); `None` for other errors.
fn hint_of(e: &sqlx::Error) -> Option<&'static str> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::sqlite::SqliteError>()
            .and_then(|_| db.code())
            .as_deref()
            .and_then(sqlite_hint),
        _ => None,
    }
}

/// What an SQLite result code met while opening usually means on a PBX, or nothing for codes
/// whose own message says it (SQLite's messages name the code, not the cause). The primary
/// code is the low byte of the extended one (`SQLITE_IOERR_SHMOPEN` is 4618, `SQLITE_IOERR` 10).
fn sqlite_hint(code: &str) -> Option<&'static str> {
    match code.parse::<u32>().ok()? & 0xff {
        8 => Some("is the file system read-only, or the database file not writable by this user?"),
        10 => Some("is the disk full, or the file system read-only?"),
        14 => Some(
            "a missing directory, or a file or directory this user may not write: \
             SQLite writes its -wal and -shm files beside the database, even to read it",
        ),
        11 | 26 => {
            Some("the file is damaged or not an ipcountry database; restore it from a backup")
        }
        _ => None,
    }
}

/// Maps an sqlx error to [`StoreError::Query`] with `context`.
pub(in crate::store) fn query_err(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { context, source }
}

/// Whether `e` is a unique-constraint violation (a concurrent duplicate insert).
pub(in crate::store) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether `e` means the database could not be reached (as opposed to a query it refused):
/// no connection, or the server saying it is shutting down or starting up (SQLSTATE classes
/// 08, connection exception, and 57P, operator intervention).
pub(in crate::store) fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

impl StoreError {
    /// Whether this is the database being unreachable (down, refusing connections, the pool
    /// timing out), rather than a refused or malformed change: what a server logs once, not at
    /// every poll.
    pub fn is_unreachable(&self) -> bool {
        match self {
            StoreError::Connect { error, .. } | StoreError::Query { source: error, .. } => {
                is_connection_error(error)
            }
            _ => false,
        }
    }
}

/// The error for a database whose `generation` row has gone.
pub(in crate::store) fn missing_generation() -> StoreError {
    StoreError::Corrupt {
        table: "generation",
        id: 1,
        why: "the generation row is missing",
    }
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
        if rule.terms.shadow {
            f.write_str(" (shadow)")?;
        }
        expired_note(f, rule.terms.expires_at)
    }
}

/// An allowed host as named in a duplicate message: `#3 *.example.com "pbx vendor"`.
/// For an entry in the way of a new one: say when it is only there because it expired and
/// has not been purged.
fn expired_note(f: &mut fmt::Formatter<'_>, expires_at: Option<i64>) -> fmt::Result {
    match expires_at {
        Some(at) if at <= now_unix() => f.write_str(" (expired; `ipcountry purge` removes it)"),
        _ => Ok(()),
    }
}

struct HostRef<'a>(&'a AllowHost);

impl fmt::Display for HostRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = self.0;
        write!(f, "#{} {}", host.id, host.pattern)?;
        if !host.note.is_empty() {
            write!(f, " {:?}", host.note)?;
        }
        expired_note(f, host.expires_at)
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_hint;

    #[test]
    fn sqlite_codes_get_the_cause_a_pbx_admin_can_act_on() {
        // SQLITE_IOERR_SHMOPEN (extended) and SQLITE_IOERR: the disk.
        assert!(sqlite_hint("4618").is_some_and(|h| h.contains("disk full")));
        assert!(sqlite_hint("10").is_some_and(|h| h.contains("disk full")));
        assert!(sqlite_hint("14").is_some_and(|h| h.contains("may not write")));
        assert!(sqlite_hint("26").is_some_and(|h| h.contains("backup")));
        assert!(sqlite_hint("11").is_some_and(|h| h.contains("backup")));
        // Codes whose message says it all, and text that is no code.
        assert!(sqlite_hint("8").is_some_and(|h| h.contains("read-only")));
        assert_eq!(sqlite_hint("13"), None);
        assert_eq!(sqlite_hint("2067"), None);
        assert_eq!(sqlite_hint("HY000"), None);
    }
}
