//! SIP header parsing: the From header as it reaches the AGI.

mod chars;
pub mod from;
