//! The FastAGI wire protocol: framing, the `agi_*` environment block, replies and commands,
//! and what Asterisk does to an application's arguments before they reach us.

pub mod args;
pub mod command;
pub mod connection;
pub mod env;
pub mod reply;
