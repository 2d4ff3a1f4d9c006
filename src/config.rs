//! The configuration file: every option of every command, under the environment and the flags.
//!
//! `--config FILE`, else `/etc/ipcountry/ipcountry.toml` when it exists. A key at the top of
//! the file applies to every command that has that option (`db`, `trust`, `dns_timeout`, ...),
//! so `check` decides exactly as `serve` does; a key in a `[serve]`, `[check]`, `[agi]`, ...
//! section applies to that command only. Keys are the options' long names with `_` for `-`
//! (`max_sessions = 2048`, `listen = ["127.0.0.1:4573", "[::1]:4573"]`, `monitor = true`).
//! A key that is no option, or a section that is no command, is refused with its name and line.
//!
//! Precedence: the file < `IPCOUNTRY_<OPTION>` environment variables (`IPCOUNTRY_TRUST`,
//! `IPCOUNTRY_MAX_SESSIONS`, ...) < the flags. This is done on clap's own terms: the file's
//! values become the options' defaults, and every option reads its variable, so clap's parsing,
//! value checks and error messages are the same wherever a value came from.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches};
use toml::Spanned;

use crate::cli::Cli;

/// The file read when `--config` is not given, if it exists.
pub(crate) const DEFAULT_PATH: &str = "/etc/ipcountry/ipcountry.toml";

/// Options that have no place in a file: the file itself, and output and help switches.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// What the file said: per command (`""` for the top), per option, the value and its line.
#[derive(Debug, Default)]
pub(crate) struct FileValues {
    /// The file read, if any.
    pub(crate) path: Option<PathBuf>,
    values: BTreeMap<String, BTreeMap<String, (Vec<String>, usize)>>,
}

/// Parses the command line with the file and the environment under it.
pub(crate) fn parse(args: Vec<OsString>) -> Result<(Cli, ArgMatches, FileValues)> {
    let path = config_path(&args);
    let file = match &path {
        Some(path) => read(path)?,
        None => FileValues::default(),
    };
    let command = layered(&file)?;
    let matches = match command.try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => e.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((cli, matches, file))
}

/// `--config FILE` (or `--config=FILE`) from the raw arguments, else the default file if it
/// exists. Read before clap parses, since the file changes what clap is given.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut given = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let text = a.to_string_lossy();
        if text == "--" {
            break;
        }
        if text == "--config" {
            given = it.next().map(PathBuf::from);
        } else if let Some(v) = text.strip_prefix("--config=") {
            given = Some(PathBuf::from(v));
        }
    }
    given.or_else(|| Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()))
}

/// Reads and checks a configuration file against the options clap knows.
pub(crate) fn read(path: &Path) -> Result<FileValues> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let where_ =
        |span: std::ops::Range<usize>| 1 + text[..span.start.min(text.len())].matches('\n').count();
    let table: BTreeMap<Spanned<String>, Spanned<toml::Value>> = toml::from_str(&text)
        .with_context(|| format!("{}: not a valid TOML file", path.display()))?;
    let command = Cli::command();
    let known = options(&command);
    let mut file = FileValues {
        path: Some(path.to_owned()),
        values: BTreeMap::new(),
    };
    for (key, value) in table {
        let line = where_(key.span());
        let name = key.get_ref().clone();
        match value.into_inner() {
            toml::Value::Table(section) => {
                let Some(sub) = known.get(&name).filter(|_| !name.is_empty()) else {
                    bail!("{}:{line}: [{name}] is not a command", path.display());
                };
                for (k, v) in section {
                    let line = key_line(&text, line, &k);
                    if !sub.contains(&k) {
                        bail!(
                            "{}:{line}: `{k}` in [{name}] is not an option of `ipcountry {name}`",
                            path.display()
                        );
                    }
                    let values = scalars(&v)
                        .with_context(|| format!("{}:{line}: [{name}] {k}", path.display()))?;
                    file.values
                        .entry(name.clone())
                        .or_default()
                        .insert(k, (values, line));
                }
            }
            v => {
                if !known.values().any(|opts| opts.contains(&name)) {
                    bail!(
                        "{}:{line}: `{name}` is not an option of any command",
                        path.display()
                    );
                }
                let values =
                    scalars(&v).with_context(|| format!("{}:{line}: {name}", path.display()))?;
                file.values
                    .entry(String::new())
                    .or_default()
                    .insert(name, (values, line));
            }
        }
    }
    Ok(file)
}

/// The line of `key = ...` in the section whose header is on `header` (1-based), or the
/// header's line when it cannot be found (a dotted or quoted key).
fn key_line(text: &str, header: usize, key: &str) -> usize {
    text.lines()
        .enumerate()
        .skip(header)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(header, |(i, _)| i + 1)
}

/// A value as the strings clap parses: a string, number or boolean, or an array of them.
fn scalars(v: &toml::Value) -> Result<Vec<String>> {
    Ok(match v {
        toml::Value::String(s) => vec![s.clone()],
        toml::Value::Integer(i) => vec![i.to_string()],
        toml::Value::Float(f) => vec![f.to_string()],
        toml::Value::Boolean(b) => vec![b.to_string()],
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        bail!("an array holds strings, numbers or booleans")
                    }
                    other => out.extend(scalars(other)?),
                }
            }
            out
        }
        toml::Value::Datetime(d) => vec![d.to_string()],
        toml::Value::Table(_) => bail!("a table where a value was expected"),
    })
}

/// The options that may be in a file: `""` for the global ones, and per top-level command.
fn options(command: &clap::Command) -> BTreeMap<String, BTreeSet<String>> {
    let names = |c: &clap::Command| -> BTreeSet<String> {
        c.get_arguments()
            .filter(|a| !a.is_positional())
            .map(|a| a.get_id().as_str().to_owned())
            .filter(|id| !NOT_IN_FILE.contains(&id.as_str()))
            .collect()
    };
    let mut out = BTreeMap::new();
    out.insert(String::new(), names(command));
    for sub in command.get_subcommands() {
        out.insert(sub.get_name().to_owned(), names(sub));
    }
    out
}

/// The command line with the file's values as defaults and an `IPCOUNTRY_*` variable for every
/// option.
fn layered(file: &FileValues) -> Result<clap::Command> {
    let mut command = Cli::command();
    let global_ids: Vec<String> = command
        .get_arguments()
        .filter(|a| !a.is_positional())
        .map(|a| a.get_id().as_str().to_owned())
        .collect();
    for id in &global_ids {
        let value = file.lookup("", id);
        command = command.mut_arg(id.as_str(), |a| layer(a, value));
    }
    let subs: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for sub in subs {
        command = command.mut_subcommand(sub.as_str(), |mut s| {
            let ids: Vec<String> = s
                .get_arguments()
                .filter(|a| !a.is_positional() && !a.is_global_set())
                .map(|a| a.get_id().as_str().to_owned())
                .collect();
            for id in ids {
                let value = file.lookup(&sub, &id);
                s = s.mut_arg(id.as_str(), |a| layer(a, value));
            }
            s
        });
    }
    Ok(command)
}

/// One option: its variable, and the file's value as its default.
fn layer(a: clap::Arg, file: Option<&[String]>) -> clap::Arg {
    let id = a.get_id().as_str().to_owned();
    if NOT_IN_FILE.contains(&id.as_str()) {
        return a;
    }
    let a = if a.get_env().is_none() {
        a.env(format!("IPCOUNTRY_{}", id.to_uppercase()))
    } else {
        a
    };
    match file {
        None => a,
        Some(values) if matches!(a.get_action(), ArgAction::Append) => {
            a.default_values(values.iter().cloned())
        }
        Some(values) => match values.first() {
            Some(v) => a.default_value(v.clone()),
            None => a,
        },
    }
}

impl FileValues {
    /// The file's value for `option` of `command`: its section's, else the top's.
    fn lookup(&self, command: &str, option: &str) -> Option<&[String]> {
        self.values
            .get(command)
            .and_then(|s| s.get(option))
            .or_else(|| self.values.get("").and_then(|s| s.get(option)))
            .map(|(v, _)| v.as_slice())
    }

    /// The line of the file that set `option` of `command`.
    fn line(&self, command: &str, option: &str) -> Option<usize> {
        self.values
            .get(command)
            .and_then(|s| s.get(option))
            .or_else(|| self.values.get("").and_then(|s| s.get(option)))
            .map(|(_, l)| *l)
    }
}

/// `config check`: the effective settings of `serve` (and the global ones), each with where it
/// came from.
pub(crate) fn report(file: &FileValues) -> Result<Vec<(String, String, String)>> {
    let command = layered(file)?;
    let matches = command
        .try_get_matches_from(["ipcountry", "serve"])
        .context("the configuration does not make a valid `serve`")?;
    let (_, serve) = matches.subcommand().context("`serve` was not parsed")?;
    let mut out = Vec::new();
    let full = Cli::command();
    let serve_cmd = full
        .find_subcommand("serve")
        .context("no serve command")?
        .clone();
    for arg in full.get_arguments().chain(serve_cmd.get_arguments()) {
        let id = arg.get_id().as_str();
        if arg.is_positional() || NOT_IN_FILE.contains(&id) {
            continue;
        }
        let Some(source) = serve.value_source(id) else {
            out.push((id.to_owned(), "-".to_owned(), "not set".to_owned()));
            continue;
        };
        let value = serve
            .get_raw(id)
            .map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let from = match (source, file.line("serve", id), &file.path) {
            (ValueSource::DefaultValue, Some(line), Some(path)) => {
                format!("file {}:{line}", path.display())
            }
            (ValueSource::DefaultValue, _, _) => "default".to_owned(),
            (ValueSource::EnvVariable, ..) => match arg.get_env() {
                Some(var) => format!("env {}", var.to_string_lossy()),
                None => format!("env IPCOUNTRY_{}", id.to_uppercase()),
            },
            _ => "flag".to_owned(),
        };
        let shown = if id == "db" {
            hide_password(&value)
        } else {
            value
        };
        out.push((id.to_owned(), shown, from));
    }
    Ok(out)
}

/// A URL's password as `***` (`postgres://user:***@host/db`).
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<FileValues> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ipcountry.toml");
        std::fs::write(&path, text).expect("write");
        read(&path)
    }

    #[test]
    fn unknown_keys_and_sections_are_refused_with_their_line() {
        let e = file("db = \"x.db\"\n\n[serve]\nlisten = []\nmax_sesions = 3\n").expect_err("typo");
        let msg = format!("{e:#}");
        assert!(msg.contains(":5:") && msg.contains("max_sesions"), "{msg}");
        let e = file("db = \"x.db\"\nlisen = \"1.2.3.4:5\"\n").expect_err("typo");
        assert!(format!("{e:#}").contains(":2: `lisen`"), "{e:#}");
        let e = file("[serv]\nlisten = []\n").expect_err("no such command");
        assert!(
            format!("{e:#}").contains("[serv] is not a command"),
            "{e:#}"
        );
        let e = file("db = [[1]]\n").expect_err("nested");
        assert!(format!("{e:#}").contains("db"), "{e:#}");
        assert!(file("= nonsense").is_err());
    }

    #[test]
    fn precedence_is_file_then_env_then_flag() {
        let f = file("trust = \"source\"\n[serve]\nmax_sessions = 77\nlisten = [\"127.0.0.1:5000\", \"[::1]:5000\"]\nmonitor = true\n")
            .expect("valid");
        let matches = layered(&f)
            .expect("layered")
            .try_get_matches_from(["ipcountry", "serve"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        let crate::cli::Command::Serve(serve) = cli.command else {
            panic!("serve");
        };
        assert_eq!(serve.max_sessions, 77);
        assert_eq!(serve.listen.len(), 2);
        assert!(serve.monitor);
        assert_eq!(serve.screen.trust, crate::cli::TrustArg::Source);
        // A flag beats the file.
        let matches = layered(&f)
            .expect("layered")
            .try_get_matches_from(["ipcountry", "serve", "--max-sessions", "5"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        let crate::cli::Command::Serve(serve) = cli.command else {
            panic!("serve");
        };
        assert_eq!(serve.max_sessions, 5);
        // A key at the top applies to every command that has the option: `check` too.
        let matches = layered(&f)
            .expect("layered")
            .try_get_matches_from(["ipcountry", "check", "198.51.100.9"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        let crate::cli::Command::Check(check) = cli.command else {
            panic!("check");
        };
        assert_eq!(check.trust, crate::cli::TrustArg::Source);
    }

    #[test]
    fn the_knock_page_s_keys_are_options_of_serve() {
        let f = file(
            "[serve]\nknock = \"127.0.0.1:8088\"\nknock_trusted_proxy = [\"127.0.0.1/32\"]\n\
             knock_allow_http = true\nknock_max_entries = 2\n",
        )
        .expect("valid");
        let matches = layered(&f)
            .expect("layered")
            .try_get_matches_from(["ipcountry", "serve"])
            .expect("parses");
        let cli = Cli::from_arg_matches(&matches).expect("cli");
        let crate::cli::Command::Serve(serve) = cli.command else {
            panic!("serve");
        };
        assert_eq!(serve.knock.knock, Some(([127, 0, 0, 1], 8088).into()));
        assert_eq!(serve.knock.knock_trusted_proxy.len(), 1);
        assert!(serve.knock.knock_allow_http);
        assert_eq!(serve.knock.knock_max_entries, 2);
        assert_eq!(serve.knock.knock_rate_address, 6, "the default");
    }

    #[test]
    fn a_bad_value_in_the_file_is_clap_s_error() {
        let f = file("[serve]\nmax_sessions = 0\n").expect("the key is known");
        assert!(layered(&f)
            .expect("layered")
            .try_get_matches_from(["ipcountry", "serve"])
            .is_err());
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("postgres://ipc:s3cret@db.example/ipcountry"),
            "postgres://ipc:***@db.example/ipcountry"
        );
        assert_eq!(hide_password("sqlite://x.db"), "sqlite://x.db");
    }
}
