//! ipcountry: a FastAGI server that screens inbound Asterisk/FreePBX calls by the caller's IP.
//!
//! # Data flow
//!
//! ```text
//! socket → agi::connection → agi::env → sip::from → request → snapshot.load()
//!        → decision → agi::command → socket
//! ```
//!
//! Around it: `cli` → `store` → `reload` → `snapshot.replace()`. The core
//! (`agi::{env, reply, command}`, `sip`, `request`, `ranges`, `decision`) is pure and does no I/O.
//! `session` never touches the store: it sees only the current snapshot.
//!
//! # Layout
//! - [`agi`]: the FastAGI wire protocol (framing, environment block, replies, commands, and
//!   Asterisk's argument splitter).
//! - [`ami`]: the Asterisk Manager Interface client (peers for `audit`/`watch`); [`audit`]:
//!   those peers screened with the policy.
//! - [`sip`]: the SIP From-header parser.
//! - [`ranges`]: IP ranges, rules, and the compiled interval snapshot.
//! - [`request`]: a screening request built from an AGI environment.
//! - [`decision`]: the pure verdict function (deny beats permit); [`escape`]: caller text made
//!   safe for logs; [`failures`]: one log line per peer per minute for failed connections.
//! - [`policy`]: the compiled snapshot (ranges + allow-hosts) behind an atomic pointer;
//!   [`hosts`]: allow-host patterns.
//! - [`resolve`]: hostname resolution with a deadline and a TTL cache.
//! - [`session`]: one call, end to end; [`server`]: accept loop and bounds; [`fdlimit`]: the
//!   open-files limit it needs;
//!   [`shutdown`]: signals; [`reload`]: snapshot rebuilds; [`heartbeat`]: the server's row in
//!   its database.
//! - [`metrics`]: the counters, and the `/metrics` and `/healthz` endpoint; [`alerts`]: the
//!   `--on-stranger` command.
//! - [`store`]: the SQL tables (sqlx); the only module that knows SQL exists.
//! - [`firewall`]: the snapshot as nftables (or ipset + iptables) sets and a VoIP-only chain;
//!   `nft` checks, loads, backs up and rolls back; `serve --firewall` keeps it in step.
//! - [`knock`]: the knock page (a user's token → an expiring permit entry for their address):
//!   HTTP (axum), tokens (argon2), rate limits, the HTML.

pub mod agi;
pub mod alerts;
pub mod ami;
pub mod audit;
pub(crate) mod clock;
pub mod decision;
pub mod escape;
pub mod failures;
pub mod fdlimit;
pub mod firewall;
pub mod heartbeat;
pub mod hosts;
pub mod import;
pub mod ip_text;
pub mod knock;
pub mod logbuf;
pub mod metrics;
pub mod policy;
pub mod ranges;
pub mod reload;
pub mod request;
pub mod resolve;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sip;
pub mod store;
pub mod whitelist;

/// FastAGI's well-known TCP port.
pub const DEFAULT_PORT: u16 = 4573;
