//! A SQLite database's change mark: what `stat` says of the database file and its `-wal`, so
//! that an idle server's poll can tell "nobody committed" without a query (issue 18: a query
//! is two thread hand-offs to sqlx's SQLite worker, the largest part of an idle second).
//!
//! Only `stat`, never `open`: closing any descriptor of a file drops every POSIX lock the
//! process holds on it, SQLite's included (reading `-shm` that way crashed the server, see
//! BENCHMARKS.md). A commit in WAL mode writes the `-wal` file (a checkpoint the database
//! file), which moves its modification time; the mark is compared only once it has
//! *settled*: every time in it older than [`SETTLE`] when it was taken, so that a write in the
//! same clock tick as the one it saw, or a commit caught half-way, still makes the next poll
//! query (git's "racy" index entries, the same problem).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How old a file's times must be, when a mark is taken, for the mark to be relied on: far
/// above the filesystem clock's tick (a few ms) and a writer's pause between writing its
/// frames and publishing them.
const SETTLE: Duration = Duration::from_secs(2);

/// The files whose `stat` make a mark: the database and its write-ahead log.
#[derive(Debug, Clone)]
pub(super) struct MarkedFiles {
    database: Arc<Path>,
    wal: Arc<Path>,
}

impl MarkedFiles {
    pub(super) fn new(database: &Path) -> MarkedFiles {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        MarkedFiles {
            database: Arc::from(database),
            wal: Arc::from(PathBuf::from(wal)),
        }
    }

    /// The mark now: `taken_at` is the time just before the `stat`s.
    pub(super) fn mark(&self, taken_at: SystemTime) -> ChangeMark {
        let stamps = [stamp(&self.database), stamp(&self.wal)];
        let limit = taken_at
            .checked_sub(SETTLE)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let settled = stamps
            .iter()
            .flatten()
            .all(|s| s.modified < limit && s.changed < limit);
        ChangeMark { stamps, settled }
    }
}

/// What the files looked like (see the module): two equal marks, the earlier one settled,
/// mean that no process committed in between.
#[derive(Debug, Clone, Copy)]
pub struct ChangeMark {
    /// The database's and the `-wal`'s; `None` for a file that does not exist.
    stamps: [Option<Stamp>; 2],
    /// Every time in `stamps` was older than [`SETTLE`] when the mark was taken.
    settled: bool,
}

impl ChangeMark {
    /// True when no process can have committed between `earlier` and this mark.
    pub fn unchanged_since(&self, earlier: &ChangeMark) -> bool {
        earlier.settled && self.stamps == earlier.stamps
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    device: u64,
    inode: u64,
    size: u64,
    /// Modification and status-change times, in ns since the epoch.
    modified: u128,
    changed: u128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    let ns = |secs: i64, nsecs: i64| {
        u128::try_from(secs)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u128::try_from(nsecs).unwrap_or(0))
    };
    Some(Stamp {
        device: m.dev(),
        inode: m.ino(),
        size: m.size(),
        modified: ns(m.mtime(), m.mtime_nsec()),
        changed: ns(m.ctime(), m.ctime_nsec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_settles_only_once_its_files_are_older_than_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        std::fs::write(&db, b"x").unwrap();
        let files = MarkedFiles::new(&db);
        let now = SystemTime::now();
        let fresh = files.mark(now);
        assert!(!fresh.settled, "a file written just now");
        assert!(!files.mark(now).unchanged_since(&fresh));
        let later = files.mark(now + SETTLE + Duration::from_secs(1));
        assert!(later.settled);
        assert!(files.mark(now).unchanged_since(&later));
        // A write moves the mark, even one of the same size; so does the -wal appearing.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&db, b"y").unwrap();
        assert!(!files.mark(now).unchanged_since(&later));
        let later = files.mark(now + SETTLE + Duration::from_secs(1));
        std::fs::write(dir.path().join("x.db-wal"), b"").unwrap();
        assert!(!files.mark(now).unchanged_since(&later));
    }

    #[test]
    fn missing_files_make_a_mark_that_settles() {
        let dir = tempfile::tempdir().unwrap();
        let files = MarkedFiles::new(&dir.path().join("none.db"));
        let a = files.mark(SystemTime::now());
        assert!(files.mark(SystemTime::now()).unchanged_since(&a));
    }
}
