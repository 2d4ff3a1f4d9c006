//! `config check`: is the configuration valid, and what would `serve` run with; and the
//! packaging assets made from the same command-line definition (man page, completions).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::CommandFactory;

use crate::cli::Cli;
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

/// `generate-assets DIR`: `ipcountry.1` (clap_mangen) and the bash, zsh and fish completions
/// (clap_complete), from the clap definition the binary parses with.
pub(crate) fn generate_assets(dir: &Path) -> Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .context("cannot render the man page")?;
    std::fs::write(dir.join("ipcountry.1"), page).context("cannot write the man page")?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut Cli::command(), "ipcountry", dir)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    outln!(
        "wrote the man page and the completions to {}",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
