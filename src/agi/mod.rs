//! The FastAGI wire protocol: framing, the `agi_*` environment block, replies and commands.

pub mod command;
pub mod connection;
pub mod env;
pub mod reply;
