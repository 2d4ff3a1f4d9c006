//! IP ranges, permit/deny rules, and the compiled lookup structure.

pub mod builtin;
mod index;
pub mod range;
pub mod rule;
pub mod table;

pub use range::{Family, IpRange, RangeError};
pub use rule::{Rule, RuleKind, RuleSource, Terms, CUSTOM_COUNTRY};
