//! `knock-user`: the users of the knock page (`serve --knock`). `add` and `rotate` print the
//! new token once (only its argon2 hash is stored); `rm` also deletes the permit entries the
//! user's knocks added; `list` shows each user's live entries.

use super::open_store;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde::Serialize;

use crate::cli::KnockUserAction;
use ipcountry::knock::token::{Token, UserName};
use ipcountry::ranges::{Rule, RuleKind};
use ipcountry::store::cache::now as now_unix;
use ipcountry::store::knock::note_of;
use ipcountry::store::{KnockUser, StoreError};

use super::text::utc;

/// Runs one `knock-user` action.
pub(crate) async fn knock_user(db: &str, action: KnockUserAction, json: bool) -> Result<ExitCode> {
    let store = open_store(db).await?;
    let code = match action {
        KnockUserAction::Add { name, ttl } => {
            let name = UserName::parse(name.trim())?;
            let token = Token::generate(name.clone());
            let now = now_unix();
            let user = KnockUser {
                name: name.to_string(),
                token_hash: token.hash()?,
                ttl_seconds: i64::try_from(ttl.as_secs().max(1)).context("--ttl is too long")?,
                created_at: now,
                rotated_at: now,
            };
            match store.add_knock_user(&user).await {
                Ok(()) => {
                    print_token(&user, &token, json, "added")?;
                    ExitCode::SUCCESS
                }
                Err(e) => refusal(e)?,
            }
        }
        KnockUserAction::Rotate { name } => {
            let name = UserName::parse(name.trim())?;
            let token = Token::generate(name.clone());
            match store
                .rotate_knock_token(name.as_str(), &token.hash()?, now_unix())
                .await
            {
                Ok(user) => {
                    print_token(&user, &token, json, "rotated")?;
                    ExitCode::SUCCESS
                }
                Err(e) => refusal(e)?,
            }
        }
        KnockUserAction::Rm { name } => match store.remove_knock_user(name.trim()).await {
            Ok((user, entries)) => {
                if json {
                    outln!(
                        "{}",
                        serde_json::to_string_pretty(&serde_json::json!({
                            "removed": user.name,
                            "entries_removed": entries,
                        }))?
                    );
                } else {
                    outln!(
                        "removed knock user {} and {} permit entr{}",
                        user.name,
                        entries.len(),
                        if entries.len() == 1 { "y" } else { "ies" }
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => refusal(e)?,
        },
        KnockUserAction::List => {
            let users = store.knock_users().await?;
            let permits = store.list_rules(RuleKind::Permit).await?;
            let now = now_unix();
            let rows: Vec<Listed> = users
                .into_iter()
                .map(|user| {
                    let note = note_of(&user.name);
                    let active = permits
                        .iter()
                        .filter(|r| r.note == note && !r.terms.expired_at(now))
                        .cloned()
                        .collect();
                    Listed { user, active }
                })
                .collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for row in &rows {
                    let u = &row.user;
                    outln!(
                        "{:<16} ttl {:<8} token set {}  {} active entr{}",
                        u.name,
                        humantime::format_duration(Duration::from_secs(
                            u.ttl_seconds.unsigned_abs()
                        ))
                        .to_string(),
                        utc(u.rotated_at),
                        row.active.len(),
                        if row.active.len() == 1 { "y" } else { "ies" }
                    );
                    for r in &row.active {
                        outln!(
                            "    #{} {} until {}",
                            r.id,
                            r.range,
                            r.terms.expires_at.map_or_else(|| "-".to_owned(), utc)
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

/// A user and their live knock entries, as listed.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    user: KnockUser,
    active: Vec<Rule>,
}

fn print_token(user: &KnockUser, token: &Token, json: bool, verb: &str) -> Result<()> {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "user": user.name,
                "token": token.reveal(),
                "ttl_seconds": user.ttl_seconds,
            }))?
        );
    } else {
        outln!(
            "{verb} knock user {} (a knock lasts {}); the token, shown this once:",
            user.name,
            humantime::format_duration(Duration::from_secs(user.ttl_seconds.unsigned_abs()))
        );
        outln!("{}", token.reveal());
    }
    Ok(())
}

fn refusal(e: StoreError) -> Result<ExitCode> {
    match e {
        StoreError::DuplicateUser { .. } | StoreError::NotFound { .. } => {
            eprintln!("{e}");
            Ok(ExitCode::from(1))
        }
        e => Err(e.into()),
    }
}

/// `serve --knock ADDR`: binds the knock page's listener and starts it (until `shutdown`).
pub(crate) async fn start_page(
    args: &crate::cli::KnockArgs,
    parts: ipcountry::knock::Parts,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<()> {
    use ipcountry::knock::{http, KnockSettings, Knocker};
    let Some(addr) = args.knock else {
        return Ok(());
    };
    let settings = KnockSettings {
        trusted_proxies: args.knock_trusted_proxy.clone(),
        allow_http: args.knock_allow_http,
        per_address: args.knock_rate_address,
        per_user: args.knock_rate_user,
        cap: usize::from(args.knock_max_entries),
        ..KnockSettings::default()
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve the knock page on {addr}"))?;
    let knocker = Knocker::new(parts, settings)
        .await
        .context("cannot start the knock page")?;
    tokio::spawn(http::serve(
        listener,
        std::sync::Arc::new(knocker),
        shutdown,
    ));
    Ok(())
}

/// The store for the knock page: the server's own, or where to open it.
pub(crate) fn share(source: &ipcountry::reload::Source) -> ipcountry::reload::Source {
    use ipcountry::reload::Source;
    match source {
        Source::Open(store) => Source::Open(store.clone()),
        Source::Pending { url, settings } => Source::Pending {
            url: url.clone(),
            settings: *settings,
        },
    }
}
