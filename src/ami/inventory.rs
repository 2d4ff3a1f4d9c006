//! One audit's worth of peers over AMI: the list actions in order, on one logged-in session,
//! each with a fixed `ActionID`. An action whose module is not loaded (Asterisk's
//! "Invalid/unknown command") is skipped with a note; so is an empty PJSIP list, which
//! Asterisk answers with an error (`No Contacts found`) rather than an empty list.

use super::client::{AmiError, Client, Settings};
use super::peers::{self, Kind, Peer};
use super::target::Target;

/// The actions run, their `ActionID`s and the peers they give.
const ACTIONS: &[(&str, &str, Kind)] = &[
    ("PJSIPShowContacts", "ipc-contacts-1", Kind::PjsipContact),
    (
        "PJSIPShowRegistrationsOutbound",
        "ipc-regout-1",
        Kind::PjsipRegistration,
    ),
    ("SIPpeers", "ipc-sippeers-1", Kind::Sip),
    ("IAXpeerlist", "ipc-iax-1", Kind::Iax),
];

/// What the PBX reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Every peer, in the order of the actions and of Asterisk's lists.
    pub peers: Vec<Peer>,
    /// One line per action skipped (`IAXpeerlist: not available (chan_iax2 not loaded)`).
    pub notes: Vec<String>,
}

/// Logs in, runs the list actions, logs off.
pub async fn collect(target: &Target, settings: Settings) -> Result<Inventory, AmiError> {
    let mut client = Client::connect(target, settings).await?;
    let mut inventory = Inventory::default();
    for (action, id, kind) in ACTIONS {
        let events = match client.list(action, id).await {
            Ok(events) => events,
            Err(AmiError::UnknownAction { .. }) => {
                inventory.notes.push(format!(
                    "{action}: not available ({} not loaded)",
                    module(*kind)
                ));
                continue;
            }
            Err(AmiError::ActionFailed { message, .. })
                if message.starts_with("No ") && message.ends_with(" found") =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        inventory
            .peers
            .extend(events.iter().filter_map(|e| match kind {
                Kind::PjsipContact => peers::from_contact(e),
                Kind::PjsipRegistration => peers::from_registration(e),
                Kind::Sip | Kind::Iax => peers::from_peer_entry(e, *kind),
            }));
    }
    client.logoff().await?;
    Ok(inventory)
}

fn module(kind: Kind) -> &'static str {
    match kind {
        Kind::PjsipContact | Kind::PjsipRegistration => "res_pjsip",
        Kind::Sip => "chan_sip",
        Kind::Iax => "chan_iax2",
    }
}
