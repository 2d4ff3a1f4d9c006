//! Test support, not part of the API: a fresh, empty database for one test, on the backend the
//! test suite runs on. The integration harness and the store's own tests use it.
//!
//! - `IPCOUNTRY_TEST_DB` picks the suite's backend: `sqlite` (the default, when unset),
//!   `mysql` (MariaDB/MySQL) or `postgres`.
//! - `IPCOUNTRY_TEST_MYSQL` and `IPCOUNTRY_TEST_POSTGRES` are URLs of the servers, for a user
//!   allowed to create databases (`ipct_…`): `mysql://user:pw@127.0.0.1:3306/`,
//!   `postgres://user:pw@127.0.0.1:5432/postgres`. Each test gets a database of its own there.
//!
//! A test that needs a server whose variable is unset fails when `CI` is set (to anything but
//! `false`, `0` or empty; [`in_ci`]), and is skipped with a notice on stderr otherwise. A suite
//! asked to run on a server backend whose variable is unset always fails.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor};

use super::{redact_url, Backend};

/// The variable that picks the suite's backend.
pub const BACKEND_VAR: &str = "IPCOUNTRY_TEST_DB";

/// The variable holding a backend's server URL.
pub fn server_var(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "",
        Backend::MySql => "IPCOUNTRY_TEST_MYSQL",
        Backend::Postgres => "IPCOUNTRY_TEST_POSTGRES",
    }
}

/// Whether this is a CI run (`CI` set, and not to `false` or empty).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// The backend the suite runs on. Panics on a value it does not know.
pub fn suite_backend() -> Backend {
    match std::env::var(BACKEND_VAR).as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
        Ok("mysql" | "mariadb") => Backend::MySql,
        Ok("postgres" | "postgresql") => Backend::Postgres,
        Ok(other) => panic!("{BACKEND_VAR}={other:?}: use sqlite, mysql or postgres"),
    }
}

/// The URL of a fresh, empty database for one test on the suite's backend: a file in `dir` on
/// SQLite, a new database on the server otherwise. Panics when the server is not configured
/// or cannot be reached: the suite was asked to run on it.
pub fn fresh_db_url(dir: &Path) -> String {
    let backend = suite_backend();
    if backend == Backend::Sqlite {
        return format!("sqlite://{}", dir.join("ipcountry.db").display());
    }
    let Some(server) = std::env::var(server_var(backend))
        .ok()
        .filter(|s| !s.is_empty())
    else {
        panic!(
            "{BACKEND_VAR}={} needs {} (the URL of a user allowed to create databases)",
            backend.as_str(),
            server_var(backend)
        );
    };
    create_database(backend, &server)
}

/// Creates a new, empty database on the server at `server` and returns its URL.
pub fn create_database(backend: Backend, server: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "ipct_{}_{}_{}",
        std::process::id(),
        secs % 1_000_000,
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    // The name is spliced into the statement (identifiers cannot be bound): it is made here of
    // `[a-z0-9_]` only.
    assert!(name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    let create = format!("CREATE DATABASE {name}");
    let admin = server.to_owned();
    let done = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let created: Result<(), sqlx::Error> = runtime.block_on(async {
            match backend {
                Backend::MySql => {
                    let url = admin.replacen("mariadb://", "mysql://", 1);
                    let mut conn = sqlx::MySqlConnection::connect(&url).await?;
                    conn.execute(create.as_str()).await?;
                    conn.close().await
                }
                Backend::Postgres => {
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    conn.execute(create.as_str()).await?;
                    conn.close().await
                }
                Backend::Sqlite => Ok(()),
            }
        });
        created.map_err(|e| e.to_string())
    })
    .join();
    match done {
        Ok(Ok(())) => with_database(server, &name),
        Ok(Err(e)) => panic!(
            "cannot create a test database on {}: {e}",
            redact_url(server)
        ),
        Err(_) => panic!("the test database thread panicked"),
    }
}

/// `url` with its database (path) replaced by `name`, query kept.
pub fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |i| &tail[i..]);
    format!("{scheme}://{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_is_replaced_and_the_rest_kept() {
        assert_eq!(
            with_database(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "t1"
            ),
            "postgres://u:p@127.0.0.1:5432/t1?sslmode=disable"
        );
        assert_eq!(
            with_database("mysql://u:p@h:3306", "t2"),
            "mysql://u:p@h:3306/t2"
        );
        assert_eq!(with_database("mysql://u:p@h/", "t3"), "mysql://u:p@h/t3");
    }
}
