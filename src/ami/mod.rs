//! The Asterisk Manager Interface, as far as auditing registered peers needs it: framing
//! ([`frame`]), a client with typed errors and deadlines ([`client`]), the `ami://` URL
//! ([`target`]), peers from AMI events ([`peers`]) or CLI text ([`cli_text`]), and one
//! audit's round of list actions ([`inventory`]). `audit` (the library module) screens the
//! peers with the policy; the `audit` and `watch` commands print and remember them.
//!
//! # Which address is screened
//!
//! - **PJSIP contacts: the contact URI's host** (`Uri:` of `ContactList`), not `ViaAddr`.
//!   `ViaAddr` is the `sent-by` host of the REGISTER's last `Via` header (res_pjsip_registrar
//!   copies it from there), text the device wrote itself, like the Contact; neither is the
//!   packet's source as such. But the contact URI is where Asterisk sends this peer's
//!   calls and qualify requests, and with `rewrite_contact = yes` (FreePBX's default for
//!   NAT) Asterisk replaces it with the REGISTER's real source address and port before it is
//!   stored. A NATed phone's `Via` keeps its private address (which the built-in rules
//!   permit), so screening `ViaAddr` would pass a phone abroad behind any home router. A host
//!   name in a URI is screened like a From host name: allow-hosts, then DNS.
//! - **PJSIP outbound registrations: the server URI's host** (`ServerUri:`), the trunk we
//!   register to; only while `Registered`.
//! - **chan_sip / IAX peers: `IPaddress`** (with `IPport`): the address the registration
//!   came from (chan_sip records the packet source, NAT or not). `-none-` means unregistered.
//!
//! A peer that is unregistered, rejected or failing qualify is `unreachable`, never ko.

pub mod cli_text;
pub mod client;
pub mod frame;
pub mod inventory;
pub mod peers;
#[doc(hidden)]
pub mod scripted;
pub mod target;

#[cfg(test)]
mod tests;

pub use client::{AmiError, Client, Settings};
pub use inventory::{collect, Inventory};
pub use peers::{Host, Kind, Peer};
pub use target::{Secret, Target, TargetError};
