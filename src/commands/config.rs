//! `config check`: is the configuration valid, and what would `serve` run with.

use std::process::ExitCode;

use anyhow::Result;

use crate::config;

/// Prints whether the file is valid (or there is none) and every setting of `serve` with where
/// it came from: a flag, an `IPCOUNTRY_*` variable, the file (and its line), or the default.
pub(crate) fn check(file: &config::FileValues) -> Result<ExitCode> {
    match &file.path {
        Some(path) => outln!("configuration file: {} (valid)", path.display()),
        None => outln!(
            "configuration file: none ({} does not exist; give one with --config)",
            config::DEFAULT_PATH
        ),
    }
    let rows = config::report(file)?;
    let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let vwidth = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).min(40);
    for (name, value, from) in rows {
        outln!("{name:<width$}  {value:<vwidth$}  {from}");
    }
    Ok(ExitCode::SUCCESS)
}
