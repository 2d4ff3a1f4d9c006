//! SIP header parsing: the From header as it reaches the AGI.

pub mod from;
