//! The client against the scripted server replaying the recorded sessions byte for byte: the
//! happy path (and the bytes the client sends, compared with the capture), then every error.

use std::time::Duration;

use super::client::{AmiError, Client, Settings};
use super::frame::Limits;
use super::inventory::collect;
use super::peers::{Host, Kind};
use super::scripted::{fixture, ScriptedAmi};
use super::target::Target;

fn settings() -> Settings {
    Settings {
        timeout: Duration::from_millis(300),
        ..Settings::default()
    }
}

fn target(url: &str) -> Target {
    Target::parse(url, None).expect("url")
}

/// The server with every list action of a run-1 audit scripted from the captures.
fn run1() -> ScriptedAmi {
    ScriptedAmi::asterisk()
        .on("ipc-contacts-1", fixture("pjsipshowcontacts.response.raw"))
        .on(
            "ipc-regout-1",
            fixture("pjsipshowregistrationsoutbound.response.raw"),
        )
        .on("ipc-sippeers-1", fixture("sippeers.response.raw"))
        .on("ipc-iax-1", fixture("iaxpeerlist.response.raw"))
}

#[tokio::test]
async fn one_list_replayed_and_the_client_sends_what_was_recorded() {
    let server = ScriptedAmi::asterisk()
        .on("ipc-contacts-1", fixture("pjsipshowcontacts.response.raw"))
        .start()
        .await;
    let mut client = Client::connect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("login");
    let events = client
        .list("PJSIPShowContacts", "ipc-contacts-1")
        .await
        .expect("list");
    assert_eq!(events.len(), 4);
    assert_eq!(events[3].get("Status"), Some("Unreachable"));
    client.logoff().await.expect("logoff");
    assert_eq!(
        String::from_utf8_lossy(&server.received()),
        String::from_utf8_lossy(&fixture("pjsipshowcontacts.to-asterisk.raw"))
    );
}

#[tokio::test]
async fn a_whole_inventory_skips_the_missing_iax_module_once() {
    let server = run1().start().await;
    let inv = collect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("inventory");
    let kinds: Vec<_> = inv
        .peers
        .iter()
        .map(|p| (p.kind, p.name.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::PjsipContact, "101"),
            (Kind::PjsipContact, "101"),
            (Kind::PjsipContact, "102"),
            (Kind::PjsipContact, "104"),
            (Kind::PjsipRegistration, "reg-dead"),
            (Kind::PjsipRegistration, "reg-to-chansip"),
            (Kind::Sip, "201"),
            (Kind::Sip, "202"),
            (Kind::Sip, "203"),
            (Kind::Sip, "carrier-b"),
            (Kind::Sip, "pjsip-in"),
        ]
    );
    assert_eq!(
        inv.notes,
        ["IAXpeerlist: not available (chan_iax2 not loaded)"]
    );
    assert_eq!(
        inv.peers[1].host,
        Some(Host::Ip("::1".parse().expect("ip")))
    );
    assert!(!inv.peers[3].reachable, "104 is Unreachable");
    assert!(!inv.peers[4].reachable, "reg-dead is Rejected");
    assert!(inv.peers[5].reachable);
    assert!(!inv.peers[7].reachable, "202 never registered");
    assert_eq!(inv.peers[9].address, "198.51.100.20:5060");
}

#[tokio::test]
async fn an_empty_pjsip_list_is_an_error_reply_and_means_no_contacts() {
    let v6run = fixture("chansip-ipv6/pjsipshowcontacts-chansip-ipv6-run.response.raw");
    let v6run = String::from_utf8_lossy(&v6run).replace("ipc-contacts-v6run", "ipc-contacts-1");
    let sippeers = String::from_utf8_lossy(&fixture("chansip-ipv6/sippeers-ipv6.response.raw"))
        .replace("ipc-sippeers-v6", "ipc-sippeers-1");
    let server = ScriptedAmi::asterisk()
        .on("ipc-contacts-1", v6run.into_bytes())
        .on(
            "ipc-regout-1",
            fixture("pjsipshowregistrationsoutbound.response.raw"),
        )
        .on("ipc-sippeers-1", sippeers.into_bytes())
        .on("ipc-iax-1", fixture("iaxpeerlist.response.raw"))
        .start()
        .await;
    let inv = collect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("inventory");
    assert!(inv.peers.iter().all(|p| p.kind != Kind::PjsipContact));
    let sip: Vec<_> = inv.peers.iter().filter(|p| p.kind == Kind::Sip).collect();
    assert_eq!(sip[0].address, "[::1]:15221");
}

#[tokio::test]
async fn connection_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let e = Client::connect(&target(&format!("ami://u:s@{addr}")), settings())
        .await
        .expect_err("refused");
    assert!(matches!(e, AmiError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");
}

#[tokio::test]
async fn banner_missing() {
    let server = ScriptedAmi::asterisk()
        .with_banner(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())
        .start()
        .await;
    let e = Client::connect(&target(&server.url("u", "s")), settings())
        .await
        .expect_err("no banner");
    assert!(
        matches!(&e, AmiError::NoBanner { got } if got == "HTTP/1.1 400 Bad Request"),
        "{e:?}"
    );
    // A server that says nothing at all times out on the banner.
    let silent = ScriptedAmi::asterisk()
        .with_banner(Vec::new())
        .start()
        .await;
    let e = Client::connect(&target(&silent.url("u", "s")), settings())
        .await
        .expect_err("silent");
    assert!(
        matches!(
            e,
            AmiError::Timeout {
                during: "reading the banner",
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn login_refused_and_the_secret_is_not_in_the_message() {
    let bad = fixture("login-bad.from-asterisk.raw");
    let server = ScriptedAmi::asterisk()
        .on_last("login-1", super::scripted::login_reply(&bad))
        .start()
        .await;
    let e = Client::connect(
        &target(&server.url("ipcountry", "wrong-secret")),
        settings(),
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(&e, AmiError::LoginRefused { message, .. } if message == "Authentication failed"),
        "{e:?}"
    );
    assert!(!format!("{e} {e:?}").contains("wrong-secret"), "{e}");
    assert_eq!(
        String::from_utf8_lossy(&server.received()),
        String::from_utf8_lossy(&fixture("login-bad.to-asterisk.raw"))
    );
}

#[tokio::test]
async fn permission_denied_and_unknown_action() {
    let denied = fixture("command-permission-denied.response.raw");
    let unknown = fixture("unknown-action.response.raw");
    let server = ScriptedAmi::asterisk()
        .on("ipc-cmd-1", denied)
        .on("ipc-unknown-1", unknown)
        .start()
        .await;
    let mut client = Client::connect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("login");
    let e = client
        .list("Command", "ipc-cmd-1")
        .await
        .expect_err("denied");
    assert!(matches!(e, AmiError::PermissionDenied { .. }), "{e:?}");
    let e = client
        .list("NoSuchAction", "ipc-unknown-1")
        .await
        .expect_err("unknown");
    assert!(matches!(e, AmiError::UnknownAction { .. }), "{e:?}");
}

#[tokio::test]
async fn a_list_that_never_comes_times_out() {
    let server = ScriptedAmi::asterisk().start().await;
    let mut client = Client::connect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("login");
    let started = std::time::Instant::now();
    let e = client
        .list("SIPpeers", "ipc-sippeers-1")
        .await
        .expect_err("silent");
    assert!(matches!(e, AmiError::Timeout { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn the_connection_dropped_mid_list() {
    let full = fixture("pjsipshowcontacts.response.raw");
    let half = full[..full.len() / 2].to_vec();
    let server = ScriptedAmi::asterisk()
        .on_last("ipc-contacts-1", half)
        .start()
        .await;
    let mut client = Client::connect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("login");
    let e = client
        .list("PJSIPShowContacts", "ipc-contacts-1")
        .await
        .expect_err("dropped");
    assert!(
        matches!(
            e,
            AmiError::Dropped {
                during: "reading a list"
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn oversized_messages_and_lists() {
    let mut huge = b"Response: Success\r\nActionID: ipc-sippeers-1\r\nMessage: ".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 100_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let server = ScriptedAmi::asterisk()
        .on("ipc-sippeers-1", huge)
        .on("ipc-contacts-1", fixture("pjsipshowcontacts.response.raw"))
        .start()
        .await;
    let url = server.url("ipcountry", "s3cret");
    let mut client = Client::connect(&target(&url), settings())
        .await
        .expect("login");
    let e = client
        .list("SIPpeers", "ipc-sippeers-1")
        .await
        .expect_err("huge");
    assert!(
        matches!(e, AmiError::TooLarge { what: "line bytes", limit, .. } if limit == Limits::default().max_line),
        "{e:?}"
    );
    let few = Settings {
        max_events: 3,
        ..settings()
    };
    let mut client = Client::connect(&target(&url), few).await.expect("login");
    let e = client
        .list("PJSIPShowContacts", "ipc-contacts-1")
        .await
        .expect_err("too many");
    assert!(
        matches!(
            e,
            AmiError::TooLarge {
                what: "events",
                limit: 3,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn unsolicited_events_are_skipped() {
    // Events on by default: FullyBooted arrives between the login and the list.
    let noisy = fixture("login-no-events-header.from-asterisk.raw");
    let text = String::from_utf8_lossy(&noisy);
    let booted = text
        .split("\r\n\r\n")
        .find(|b| b.contains("Event: FullyBooted"))
        .expect("FullyBooted in the capture");
    let mut reply = format!("{booted}\r\n\r\n").into_bytes();
    reply.extend(fixture("sippeers.response.raw"));
    let server = ScriptedAmi::asterisk()
        .on("ipc-sippeers-1", reply)
        .start()
        .await;
    let mut client = Client::connect(&target(&server.url("ipcountry", "s3cret")), settings())
        .await
        .expect("login");
    let events = client
        .list("SIPpeers", "ipc-sippeers-1")
        .await
        .expect("list");
    assert_eq!(events.len(), 5);
}
