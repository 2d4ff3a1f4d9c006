//! One integration test binary: the real server on 127.0.0.1:0 with a temporary SQLite file,
//! driven by a fake Asterisk that writes the recorded FastAGI bytes from
//! `../shared/fixtures/asterisk-agi/`, and the real `ipcountry` binary for the CLI.

mod audit;
mod backends;
mod binary;
mod cli;
mod countries;
mod dialplan;
mod faults;
mod firewall;
mod harness;
mod knock;
mod knock_browser;
mod mset;
mod screening;
mod server_bounds;
mod servers;
mod store_faults;
mod terms;
mod whitelist;
