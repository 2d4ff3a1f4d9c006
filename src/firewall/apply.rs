//! Loading a ruleset into the kernel with `nft`: check, back up, load, roll back.
//!
//! [`apply`] writes the ruleset to `<state dir>/ipcountry.nft`, checks it with `nft -c -f`
//! (a failed check changes nothing, not even the backups), saves the current `inet ipcountry`
//! table to a timestamped backup in the state directory, then loads the file with one
//! `nft -f`: one transaction, so the kernel has the old table or the new one, never a mix.
//! A backup is itself an `nft -f` file that re-creates the saved table (or removes the table,
//! when there was none); [`rollback`] loads the newest one and marks it used, so a second
//! rollback goes one step further back.
//!
//! Addresses in the strangers sets (blocked at run time) are carried over: their `add element`
//! lines, with the time each had left, follow the new table in the same file.
//!
//! The program runs blocking (`std::process`): `serve` calls it on a blocking thread.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use super::nft::TABLE;
use super::FirewallError;

/// The file the applied ruleset is kept in, under the state directory.
pub const RULESET_FILE: &str = "ipcountry.nft";
/// Backups are `firewall-backup-<UTC time>.nft` under the state directory.
const BACKUP_PREFIX: &str = "firewall-backup-";
const BACKUP_SUFFIX: &str = ".nft";
/// What a used backup is renamed to (its name plus this).
const USED_SUFFIX: &str = ".rolled-back";

/// What [`apply`] did.
#[derive(Debug, Clone)]
pub struct Applied {
    /// The ruleset file loaded.
    pub file: PathBuf,
    /// The backup of the table as it was, if one was asked for.
    pub backup: Option<PathBuf>,
    /// How long the `nft -f` load took (the check not included).
    pub load_time: Duration,
}

/// The `nft` program to run (`nft` from `PATH` by default).
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Nft {
            program: PathBuf::from("nft"),
        }
    }
}

impl Nft {
    /// Runs this program instead of `nft`.
    pub fn new(program: impl Into<PathBuf>) -> Nft {
        Nft {
            program: program.into(),
        }
    }

    /// `nft -c -f FILE`: whether the kernel would take it (nothing changes).
    pub fn check(&self, file: &Path) -> Result<(), FirewallError> {
        self.run(&["-c", "-f"], Some(file)).map(drop)
    }

    /// `nft -f FILE`: one transaction.
    pub fn load(&self, file: &Path) -> Result<(), FirewallError> {
        self.run(&["-f"], Some(file)).map(drop)
    }

    /// `nft list table inet ipcountry`; `None` when there is no such table.
    pub fn list(&self) -> Result<Option<String>, FirewallError> {
        match self.run(&["list", "table", "inet", "ipcountry"], None) {
            Ok(text) => Ok(Some(text)),
            Err(FirewallError::Refused { stderr, .. })
                if stderr.contains("No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// `nft add element inet ipcountry strangers4 { IP timeout Ns }` (strangers6 for IPv6):
    /// the kernel drops `ip` on the VoIP ports at once, for `timeout` (whole seconds, at
    /// least one), whatever the snapshot says. Fails when the table is not loaded.
    pub fn add_stranger(&self, ip: IpAddr, timeout: Duration) -> Result<(), FirewallError> {
        let set = match ip {
            IpAddr::V4(_) => "strangers4",
            IpAddr::V6(_) => "strangers6",
        };
        let element = format!("{{ {ip} timeout {}s }}", timeout.as_secs().max(1));
        self.run(
            &["add", "element", "inet", "ipcountry", set, &element],
            None,
        )
        .map(drop)
    }

    /// The elements of the strangers sets now, with the seconds each has left; none when
    /// there is no table.
    pub fn strangers(&self) -> Result<Vec<Stranger>, FirewallError> {
        let mut found = Vec::new();
        for set in ["strangers4", "strangers6"] {
            let json = match self.run(&["-j", "list", "set", "inet", "ipcountry", set], None) {
                Ok(json) => json,
                // No table, or a table without the set (made by something else).
                Err(FirewallError::Refused { .. }) => continue,
                Err(e) => return Err(e),
            };
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&json) else {
                continue;
            };
            let elems = doc["nftables"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["set"]["elem"].as_array())
                .flatten();
            for e in elems {
                let e = &e["elem"];
                let (Some(addr), Some(left)) = (
                    e["val"].as_str().and_then(|v| v.parse::<IpAddr>().ok()),
                    e["expires"].as_u64(),
                ) else {
                    continue;
                };
                if left > 0 {
                    found.push(Stranger { set, addr, left });
                }
            }
        }
        Ok(found)
    }

    fn run(&self, args: &[&str], file: Option<&Path>) -> Result<String, FirewallError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(args);
        if let Some(file) = file {
            cmd.arg(file);
        }
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|source| FirewallError::Spawn {
                tool: self.program.display().to_string(),
                source,
            })?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let mut tool = self.program.display().to_string();
        for a in args {
            tool.push(' ');
            tool.push_str(a);
        }
        if let Some(file) = file {
            tool.push(' ');
            tool.push_str(&file.display().to_string());
        }
        Err(FirewallError::Refused {
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// An element of a strangers set: the address and the seconds it has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stranger {
    /// `strangers4` or `strangers6`.
    pub set: &'static str,
    /// The address.
    pub addr: IpAddr,
    /// Seconds until it expires.
    pub left: u64,
}

/// `add element` lines that put `strangers` back, each with the time it had left.
pub fn carry_strangers(strangers: &[Stranger]) -> String {
    let mut out = String::new();
    for s in strangers {
        // The set and the family agree (the kernel listed the address in that set).
        out.push_str(&format!(
            "add element {TABLE} {} {{ {} timeout {}s }}\n",
            s.set, s.addr, s.left
        ));
    }
    out
}

/// Checks `ruleset`, backs the current table up (when `backup`), and loads `ruleset` in one
/// transaction. A failed check leaves the kernel and the state directory as they were
/// (except `ipcountry.nft`, which then holds the refused ruleset, for reading).
pub fn apply(
    nft: &Nft,
    ruleset: &str,
    state_dir: &Path,
    backup: bool,
) -> Result<Applied, FirewallError> {
    std::fs::create_dir_all(state_dir).map_err(|source| FirewallError::State {
        what: "cannot create the state directory",
        path: state_dir.display().to_string(),
        source,
    })?;
    let file = state_dir.join(RULESET_FILE);
    // The strangers blocked at run time survive the re-created table, in the same transaction.
    let mut text = ruleset.to_owned();
    text.push_str(&carry_strangers(&nft.strangers()?));
    write_file(&file, &text)?;
    nft.check(&file)?;
    let backup = if backup {
        Some(save_backup(nft, state_dir)?)
    } else {
        None
    };
    let started = Instant::now();
    nft.load(&file)?;
    Ok(Applied {
        file,
        backup,
        load_time: started.elapsed(),
    })
}

/// Saves the current table (or its absence) as an `nft -f` file that restores it.
pub fn save_backup(nft: &Nft, state_dir: &Path) -> Result<PathBuf, FirewallError> {
    let mut text = format!("table {TABLE} {{}}\ndelete table {TABLE}\n");
    match nft.list()? {
        Some(listing) => text.push_str(&listing),
        None => text.insert_str(0, "# there was no inet ipcountry table\n"),
    }
    let path = state_dir.join(backup_name(SystemTime::now()));
    write_file(&path, &text)?;
    // Keep the newest KEEP_BACKUPS (a server that restarts often makes one at every start).
    let all = backups(state_dir)?;
    for old in all.iter().take(all.len().saturating_sub(KEEP_BACKUPS)) {
        let _ = std::fs::remove_file(old);
    }
    Ok(path)
}

/// How many unused backups are kept.
pub const KEEP_BACKUPS: usize = 20;

/// Loads the newest unused backup (checked first) and marks it used. Gives its path.
pub fn rollback(nft: &Nft, state_dir: &Path) -> Result<PathBuf, FirewallError> {
    let newest = backups(state_dir)?
        .pop()
        .ok_or_else(|| FirewallError::NoBackup(state_dir.display().to_string()))?;
    nft.check(&newest)?;
    nft.load(&newest)?;
    let mut used = newest.clone().into_os_string();
    used.push(USED_SUFFIX);
    std::fs::rename(&newest, &used).map_err(|source| FirewallError::State {
        what: "cannot mark the backup used",
        path: newest.display().to_string(),
        source,
    })?;
    Ok(newest)
}

/// The unused backups in `state_dir`, oldest first.
pub fn backups(state_dir: &Path) -> Result<Vec<PathBuf>, FirewallError> {
    let entries = match std::fs::read_dir(state_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FirewallError::State {
                what: "cannot read the state directory",
                path: state_dir.display().to_string(),
                source,
            })
        }
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(BACKUP_PREFIX) && n.ends_with(BACKUP_SUFFIX))
        })
        .collect();
    // The names carry the time with fixed-width fields: name order is time order.
    found.sort();
    Ok(found)
}

/// `firewall-backup-20261202T050102.123456789Z.nft`.
fn backup_name(at: SystemTime) -> String {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = humantime::format_rfc3339_seconds(
        SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs()),
    )
    .to_string()
    .replace(['-', ':'], "");
    let stamp = secs.trim_end_matches('Z');
    format!(
        "{BACKUP_PREFIX}{stamp}.{:09}Z{BACKUP_SUFFIX}",
        since.subsec_nanos()
    )
}

/// Writes `text` to `path` through a temporary file and a rename (no half-written file).
fn write_file(path: &Path, text: &str) -> Result<(), FirewallError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let failed = |source| FirewallError::State {
        what: "cannot write",
        path: path.display().to_string(),
        source,
    };
    std::fs::write(&tmp, text).map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_sort_by_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_796_187_662, 5);
        let a = backup_name(t);
        assert_eq!(a, "firewall-backup-20261202T050102.000000005Z.nft");
        let b = backup_name(t + Duration::from_millis(1));
        let c = backup_name(t + Duration::from_secs(1));
        assert!(a < b && b < c, "{a} {b} {c}");
    }
}
