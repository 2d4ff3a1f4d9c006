//! `firewall`: the policy as a kernel ruleset, printed, applied or rolled back.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};

use crate::cli::{FirewallArgs, FirewallFormat};
use ipcountry::firewall::apply::{self, Nft};
use ipcountry::firewall::iptables::{self, IpFamily};
use ipcountry::firewall::{nft, Sets, VoipPorts};
use ipcountry::policy::Builtins;

use super::open_store;

pub(crate) async fn firewall(
    db: &str,
    builtins: Builtins,
    json: bool,
    args: FirewallArgs,
) -> Result<ExitCode> {
    let state_dir = args.kernel.state_dir.clone();
    if args.rollback {
        let dir = state_dir.clone();
        let restored = tokio::task::spawn_blocking(move || apply::rollback(&Nft::default(), &dir))
            .await
            .context("the rollback task failed")??;
        if json {
            outln!("{}", serde_json::json!({ "rolled_back_to": restored }));
        } else {
            outln!("restored the table saved in {}", restored.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.apply && args.format != FirewallFormat::Nft {
        bail!("--apply loads the nftables table; for iptables, pipe --format ipset into `ipset restore` and --format iptables into `iptables-restore --noflush`");
    }
    let store = open_store(db).await?;
    let policy = ipcountry::reload::build(&store, builtins).await;
    store.close().await;
    let policy = policy?;
    let sets = Sets::from_policy(&policy);
    let ports = VoipPorts::new(args.kernel.voip_port);
    let header = vec![
        format!(
            "ipcountry firewall, snapshot generation {}",
            policy.generation().map_or(0, |g| g)
        ),
        format!("intervals: {}", counts(&sets)),
    ];
    let text = match args.format {
        FirewallFormat::Nft => nft::ruleset(&sets, &ports, &header),
        FirewallFormat::Ipset => iptables::ipset_restore(&sets)?,
        FirewallFormat::Iptables => iptables::restore_fragment(IpFamily::V4, &ports),
        FirewallFormat::Ip6tables => iptables::restore_fragment(IpFamily::V6, &ports),
    };
    if !args.apply {
        outln!("{}", text.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let dir = state_dir.clone();
    let applied =
        tokio::task::spawn_blocking(move || apply::apply(&Nft::default(), &text, &dir, true))
            .await
            .context("the apply task failed")??;
    let backup = applied.backup.clone().unwrap_or_else(PathBuf::new);
    let rollback = format!(
        "ipcountry firewall --rollback --state-dir {}",
        state_dir.display()
    );
    if json {
        outln!(
            "{}",
            serde_json::json!({
                "applied": applied.file,
                "backup": backup,
                "load_millis": applied.load_time.as_secs_f64() * 1000.0,
                "intervals": counts(&sets),
                "rollback": rollback,
            })
        );
    } else {
        outln!(
            "applied table inet ipcountry ({}) in {:.0} ms from {}",
            counts(&sets),
            applied.load_time.as_secs_f64() * 1000.0,
            applied.file.display()
        );
        outln!("the previous table is saved in {}", backup.display());
        outln!("to go back: {rollback}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `permit4 3, permit6 4, deny4 1, deny6 0`.
fn counts(sets: &Sets) -> String {
    sets.named()
        .iter()
        .map(|(name, r)| format!("{name} {}", r.len()))
        .collect::<Vec<_>>()
        .join(", ")
}
