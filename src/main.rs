//! The `ipcountry` binary: parse the command line, set up tracing, run one command, and map
//! the outcome to an exit code (0 ok / permitted, 1 denied, stranger or refused, 2 error).
//! `anyhow` lives here and in `cli.rs` only; the library returns typed errors.

mod cli;
mod commands;
mod config;

use std::process::ExitCode;

use anyhow::Result;

use cli::{Cli, Command, LogFormat, Runtime};
use ipcountry::logbuf;
use ipcountry::policy::Builtins;
use ipcountry::ranges::RuleKind;

/// mimalloc rather than glibc's allocator: a call makes a dozen small allocations (the task,
/// the read buffer, the block's text) and frees them within a millisecond, which glibc's bins
/// and consolidation made cost ~4,000 instructions a call (callgrind, BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let (cli, file) = match config::parse(std::env::args_os().collect()) {
        Ok((cli, _, file)) => (cli, file),
        Err(e) => {
            eprintln!("ipcountry: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Lines written when the guard drops (at the end of main) are flushed then.
    let _log = init_tracing(&cli.command, cli.log_format);
    // `serve --runtime per-core` (the default) starts its own single-threaded worker runtimes
    // (server::run_per_core); the main thread then only needs a current-thread runtime for
    // signals, reloads and the store. Everything else runs on tokio's multi-thread runtime.
    let mut builder = match &cli.command {
        Command::Serve(args) if args.runtime == Runtime::PerCore => {
            tokio::runtime::Builder::new_current_thread()
        }
        Command::Serve(args) if args.threads > 0 => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(usize::from(args.threads));
            b
        }
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ipcountry: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli, file)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ipcountry: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr (stdout is the AGI channel in `agi` mode); `RUST_LOG` sets the level.
/// The writer never blocks a call (`logbuf`).
fn init_tracing(command: &Command, format: LogFormat) -> Option<logbuf::Guard> {
    let default = match command {
        Command::Serve(_) | Command::Agi(_) | Command::Watch(_) => "info",
        _ => "warn",
    };
    // sqlx warns about every statement slower than 1 s; reading a permit table of 100,000+
    // country rules takes about that long and is expected, so only its errors are shown
    // unless RUST_LOG asks for more.
    let default = format!("{default},sqlx::query=error");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = logbuf::start();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            if !ansi {
                // The per-call line may then skip tracing's formatter (issue 18).
                writer.set_plain();
            }
            builder.with_ansi(ansi).init()
        }
        LogFormat::Json => builder.json().init(),
    }
    guard
}

async fn run(cli: Cli, file: config::FileValues) -> Result<ExitCode> {
    let builtins = if cli.no_builtins {
        Builtins::Off
    } else {
        Builtins::On
    };
    // A change where no server looks says so (after it is made; it never fails the command).
    let changes = commands::servers::changes_rules(&cli.command).then(|| cli.db.clone());
    let done = match cli.command {
        Command::Serve(args) => commands::serve::serve(&cli.db, builtins, *args).await,
        Command::Agi(args) => commands::serve::agi(&cli.db, builtins, args).await,
        Command::Check(args) => commands::check::check(&cli.db, builtins, cli.json, args).await,
        Command::Ip { values } => commands::check::ip(&values, cli.json),
        Command::Permit { action } => {
            commands::rules::rules(&cli.db, RuleKind::Permit, action, cli.json, builtins).await
        }
        Command::Deny { action } => {
            commands::rules::rules(&cli.db, RuleKind::Deny, action, cli.json, builtins).await
        }
        Command::AllowHost { action } => commands::rules::hosts(&cli.db, action, cli.json).await,
        Command::Import(args) => commands::countries::import(&cli.db, args, cli.json).await,
        Command::Countries => commands::countries::countries(&cli.db, cli.json).await,
        Command::Country { action } => {
            commands::countries::country(&cli.db, action, cli.json).await
        }
        Command::Refresh { import, dry_run } => {
            commands::countries::refresh(&cli.db, import, dry_run, cli.json).await
        }
        Command::Status => commands::countries::status(&cli.db, builtins, cli.json).await,
        Command::Purge => commands::rules::purge(&cli.db, cli.json).await,
        Command::Audit(args) => commands::audit::audit(&cli.db, builtins, cli.json, args).await,
        Command::Watch(args) => commands::watch::watch(&cli.db, builtins, args).await,
        Command::Firewall(args) => {
            commands::firewall::firewall(&cli.db, builtins, cli.json, args).await
        }
        Command::WhitelistGen(args) => commands::whitelist::whitelist_gen(&cli.db, args).await,
        Command::KnockUser { action } => {
            commands::knock::knock_user(&cli.db, action, cli.json).await
        }
        Command::Reload { server } => commands::serve::reload_cmd(&cli.db, server).await,
        Command::GenerateAssets { dir } => commands::config::generate_assets(&dir),
        Command::Config {
            action: cli::ConfigAction::Check,
        } => commands::config::check(&file),
    };
    if let (Some(db), Ok(code)) = (changes, &done) {
        if *code == ExitCode::SUCCESS {
            commands::servers::note_unused(&db).await;
        }
    }
    done
}
