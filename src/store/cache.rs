//! The snapshot cache: the last policy a server read from its database, kept in a file so that
//! a server restarted while the database is unreachable can screen with it (and says so) instead
//! of refusing to start, and so that `ipcountry status` can tell how old a server's snapshot is.
//!
//! `reload` writes the file after every successful load ([`SnapshotCache::write`]: a temporary
//! file beside it, synced, then renamed over it, so a reader or a crash never sees half a
//! file), and sets its modification time after every poll that found the database at the same
//! generation ([`SnapshotCache::confirm`]): the time a server last knew its snapshot current.
//! The file is JSON: the generation, when it was loaded, the database URL (without its password)
//! and every stored rule and allowed host, addresses as hex.

use std::fs;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{AllowHost, PolicyData};
use crate::ranges::{Family, IpRange, Rule, RuleKind, RuleSource, Terms};

/// What a cache file says it is.
const FORMAT: &str = "ipcountry-snapshot-cache/1";

/// A snapshot cache file (which may not exist yet).
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    path: PathBuf,
}

/// A snapshot read back from its cache file.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The policy as it was read from the database.
    pub data: PolicyData,
    /// The database it came from (the URL without its password).
    pub database: String,
    /// When it was read from the database, in Unix seconds.
    pub loaded_at: i64,
    /// When a server last found the database at this snapshot's generation (the file's
    /// modification time).
    pub confirmed_at: SystemTime,
}

/// Why the cache could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// A file operation failed.
    #[error("snapshot cache {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a snapshot cache this version wrote, or is damaged.
    #[error("snapshot cache {}: not a usable snapshot ({why})", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

impl CacheError {
    /// Whether the file simply does not exist.
    pub fn is_missing(&self) -> bool {
        matches!(self, CacheError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The file's contents.
#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    database: String,
    generation: i64,
    loaded_at: i64,
    rules: Vec<CachedRule>,
    allow_hosts: Vec<AllowHost>,
}

/// One stored rule, as written in the file.
#[derive(Serialize, Deserialize)]
struct CachedRule {
    id: i64,
    kind: String,
    family: i64,
    start: String,
    end: String,
    country: String,
    source: String,
    note: String,
    /// Absent in files written before entries could expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    shadow: bool,
}

impl SnapshotCache {
    /// The cache at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SnapshotCache {
        SnapshotCache { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `data`, read from `database` at `loaded_at` (Unix seconds).
    /// Blocking: call it off the async runtime.
    pub fn write(
        &self,
        data: &PolicyData,
        database: &str,
        loaded_at: i64,
    ) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let file = File {
            format: FORMAT.to_owned(),
            database: database.to_owned(),
            generation: data.generation,
            loaded_at,
            rules: data.rules.iter().map(encode_rule).collect(),
            allow_hosts: data.allow_hosts.clone(),
        };
        let mut tmp_name = self.path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        let mut out = BufWriter::new(fs::File::create(&tmp).map_err(io)?);
        serde_json::to_writer(&mut out, &file).map_err(|e| io(e.into()))?;
        let out = out.into_inner().map_err(|e| io(e.into_error()))?;
        out.sync_all().map_err(io)?;
        drop(out);
        fs::rename(&tmp, &self.path).map_err(io)
    }

    /// Records that the snapshot in the file is still the database's current one (sets the
    /// file's modification time to now). Blocking, but only a metadata write.
    pub fn confirm(&self) -> Result<(), CacheError> {
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let file = fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        file.set_modified(SystemTime::now()).map_err(io)
    }

    /// Reads the snapshot back. Blocking.
    pub fn read(&self) -> Result<Cached, CacheError> {
        let invalid = |why: String| CacheError::Invalid {
            path: self.path.clone(),
            why,
        };
        let io = |source| CacheError::Io {
            path: self.path.clone(),
            source,
        };
        let handle = fs::File::open(&self.path).map_err(io)?;
        let confirmed_at = handle.metadata().and_then(|m| m.modified()).map_err(io)?;
        let file: File =
            serde_json::from_reader(BufReader::new(handle)).map_err(|e| invalid(e.to_string()))?;
        if file.format != FORMAT {
            return Err(invalid(format!(
                "format {:?}, expected {FORMAT:?}",
                file.format
            )));
        }
        let rules = file
            .rules
            .iter()
            .map(decode_rule)
            .collect::<Result<Vec<Rule>, String>>()
            .map_err(invalid)?;
        Ok(Cached {
            data: PolicyData {
                generation: file.generation,
                rules,
                allow_hosts: file.allow_hosts,
            },
            database: file.database,
            loaded_at: file.loaded_at,
            confirmed_at,
        })
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    super::now_unix()
}

/// How long ago `unix` (seconds) was, for people: `42s ago`, `3m 5s ago`.
pub fn age(unix: i64) -> String {
    let secs = now().saturating_sub(unix);
    match u64::try_from(secs) {
        Ok(s) => format!(
            "{} ago",
            humantime::format_duration(std::time::Duration::from_secs(s))
        ),
        Err(_) => "in the future (clock changed?)".to_owned(),
    }
}

fn encode_rule(rule: &Rule) -> CachedRule {
    CachedRule {
        id: rule.id,
        kind: rule.kind.as_str().to_owned(),
        family: rule.range.family().number(),
        start: hex(&rule.range.start_bytes()),
        end: hex(&rule.range.end_bytes()),
        country: rule.country.clone(),
        source: rule.source.as_str().to_owned(),
        note: rule.note.clone(),
        expires_at: rule.terms.expires_at,
        shadow: rule.terms.shadow,
    }
}

fn decode_rule(row: &CachedRule) -> Result<Rule, String> {
    let bad = |what: &str| format!("rule #{}: bad {what}", row.id);
    let kind = match row.kind.as_str() {
        "permit" => RuleKind::Permit,
        "deny" => RuleKind::Deny,
        _ => return Err(bad("kind")),
    };
    let family = Family::from_number(row.family).ok_or_else(|| bad("family"))?;
    let start = unhex(&row.start).ok_or_else(|| bad("start"))?;
    let end = unhex(&row.end).ok_or_else(|| bad("end"))?;
    let range = IpRange::from_bytes(family, &start, &end).ok_or_else(|| bad("range"))?;
    let source = RuleSource::parse(&row.source).ok_or_else(|| bad("source"))?;
    Ok(Rule {
        id: row.id,
        kind,
        range,
        country: row.country.clone(),
        source,
        note: row.note.clone(),
        terms: Terms {
            expires_at: row.expires_at,
            shadow: row.shadow,
        },
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranges::CUSTOM_COUNTRY;

    #[test]
    fn a_snapshot_survives_the_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let cache = SnapshotCache::new(dir.path().join("snapshot.json"));
        assert!(cache.read().unwrap_err().is_missing());
        let rule = |id, kind, range: &str, note: &str| Rule {
            id,
            kind,
            range: range.parse().unwrap(),
            country: CUSTOM_COUNTRY.to_owned(),
            source: RuleSource::Custom,
            note: note.to_owned(),
            terms: Terms {
                expires_at: (id == 2).then_some(1_900_000_000),
                shadow: id == 2,
            },
        };
        let data = PolicyData {
            generation: 7,
            rules: vec![
                rule(1, RuleKind::Permit, "203.0.113.0/24", "office \"hq\""),
                rule(2, RuleKind::Permit, "2001:db8::/32", ""),
                rule(1, RuleKind::Deny, "203.0.113.66", ""),
            ],
            allow_hosts: vec![AllowHost {
                id: 1,
                pattern: "*.example.com".into(),
                note: String::new(),
                created_at: 1_700_000_000,
                expires_at: Some(1_900_000_000),
            }],
        };
        cache
            .write(&data, "postgres://ipc:***@db/x", 1_700_000_100)
            .unwrap();
        let back = cache.read().unwrap();
        assert_eq!(back.data, data);
        assert_eq!(back.database, "postgres://ipc:***@db/x");
        assert_eq!(back.loaded_at, 1_700_000_100);
        cache.confirm().unwrap();
        assert!(cache.read().unwrap().confirmed_at >= back.confirmed_at);

        fs::write(cache.path(), "{\"format\": \"something else\"}").unwrap();
        assert!(matches!(cache.read(), Err(CacheError::Invalid { .. })));
    }
}
