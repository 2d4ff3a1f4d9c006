//! The running servers of a database, as the CLI sees them (the `server` table each `serve`
//! keeps its row in): `status`'s servers section, and the note a change prints when no server
//! uses the database it changed ("no silent second database", issue 12).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{Command, CountryAction, HostAction, RuleAction};
use ipcountry::store::{redact_url, Backend, ServerRow, Store, STALE_AFTER};

/// How long the note may wait for the server table before it is skipped.
const NOTE_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether `command` changes the rules (or the catalog they come from) when it succeeds: the
/// commands after which [`note_unused`] runs.
pub(crate) fn changes_rules(command: &Command) -> bool {
    match command {
        Command::Permit { action } | Command::Deny { action } => {
            matches!(action, RuleAction::Add { .. } | RuleAction::Rm { .. })
        }
        Command::AllowHost { action } => {
            matches!(action, HostAction::Add { .. } | HostAction::Rm { .. })
        }
        Command::Country { action } => {
            matches!(action, CountryAction::Add { .. } | CountryAction::Rm { .. })
        }
        Command::Refresh { dry_run, .. } => !dry_run,
        Command::Import(_) | Command::Purge => true,
        Command::WhitelistGen(args) => !args.dry_run,
        _ => false,
    }
}

/// After a change: says on stderr when no live server uses `db`
/// (`note: no server is using /root/ipcountry.db`), naming a SQLite file by its absolute path.
/// Silent when a server uses it, and when the server table cannot be read (the change is
/// made either way).
pub(crate) async fn note_unused(db: &str) {
    let live = tokio::time::timeout(NOTE_TIMEOUT, async {
        let store = super::open_store(db).await.ok()?;
        let rows = store.servers().await;
        store.close().await;
        let now = now_unix();
        rows.ok().map(|rows| rows.iter().any(|r| r.is_live(now)))
    })
    .await;
    if let Ok(Some(false)) = live {
        eprintln!("note: no server is using {}", database_name(db).display());
    }
}

/// The database as a person finds it: a SQLite file's absolute path (`sqlite://ipcountry.db`
/// run in `/root` → `/root/ipcountry.db`), a server URL without its password.
pub(crate) fn database_name(db: &str) -> PathBuf {
    if !matches!(Backend::of(db), Ok(Backend::Sqlite)) {
        return PathBuf::from(redact_url(db));
    }
    let path = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
        .unwrap_or(db);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return PathBuf::from(db);
    }
    std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path))
}

/// One server as `status` shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ServerStatus {
    #[serde(flatten)]
    row: ServerRow,
    /// How far the server's snapshot is behind the database's generation (0: current;
    /// negative if the database's counter went back).
    behind: i64,
    loaded_seconds_ago: u64,
    heartbeat_seconds_ago: u64,
    /// Whether the heartbeat is within the stale limit: the server is running.
    live: bool,
}

/// Every server row of `store`, with how current each is against `generation` (the
/// database's); `None` when the table cannot be read.
pub(crate) async fn read(store: &Store, generation: i64) -> Option<Vec<ServerStatus>> {
    let rows = store.servers().await.ok()?;
    let now = now_unix();
    Some(
        rows.into_iter()
            .map(|row| ServerStatus {
                behind: generation - row.generation,
                loaded_seconds_ago: row.loaded_age(now).as_secs(),
                heartbeat_seconds_ago: row.heartbeat_age(now).as_secs(),
                live: row.is_live(now),
                row,
            })
            .collect(),
    )
}

/// The `servers:` lines of `status`.
pub(crate) fn print(servers: Option<&[ServerStatus]>) {
    let Some(servers) = servers else {
        outln!("servers:    the server table cannot be read");
        return;
    };
    if !servers.iter().any(|s| s.live) {
        outln!("servers:    no server is using this database");
    }
    let mut label = "servers:";
    for s in servers {
        let listen = if s.row.listen.is_empty() {
            "nothing".to_owned()
        } else {
            s.row.listen.join(", ")
        };
        outln!(
            "{label:<11} {} pid {}, listening on {listen}, version {}",
            s.row.host,
            s.row.pid,
            s.row.version
        );
        label = "";
        let versus = match s.behind {
            0 => "current".to_owned(),
            n if n > 0 => format!("behind by {n}"),
            _ => "the database is at an older generation".to_owned(),
        };
        let stale = if s.live {
            String::new()
        } else {
            format!(
                ": stale (no heartbeat for over {}), probably not running",
                ago(STALE_AFTER.as_secs())
            )
        };
        outln!(
            "            generation {} ({versus}), loaded {} ago, heartbeat {} ago{stale}",
            s.row.generation,
            ago(s.loaded_seconds_ago),
            ago(s.heartbeat_seconds_ago)
        );
    }
}

/// `42s`, `3m`, `5h`, `2d`: the largest whole unit.
fn ago(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Now, in Unix seconds.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_use_the_largest_whole_unit() {
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(61), "1m");
        assert_eq!(ago(3 * 3600 + 5), "3h");
        assert_eq!(ago(2 * 86_400), "2d");
    }

    #[test]
    fn sqlite_files_are_named_by_absolute_path_servers_without_password() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            database_name("sqlite://ipcountry.db"),
            cwd.join("ipcountry.db")
        );
        assert_eq!(database_name("./x.db?mode=rwc"), cwd.join("x.db"));
        assert_eq!(
            database_name("sqlite:///var/lib/ipcountry/ipcountry.db"),
            PathBuf::from("/var/lib/ipcountry/ipcountry.db")
        );
        assert_eq!(
            database_name("sqlite::memory:"),
            PathBuf::from("sqlite::memory:")
        );
        let shown = database_name("mysql://u:secret@db/ipc");
        assert!(!shown.display().to_string().contains("secret"), "{shown:?}");
    }
}
