//! The SIP From parser on any text (the caller writes it): never a panic; a parsed host that
//! is an address displays as that address.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(from) = ipcountry::sip::from::parse(&text) {
        if let Some(host) = from.host() {
            let shown = host.to_string();
            if let Some(ip) = host.ip() {
                let bare = shown.trim_start_matches('[').trim_end_matches(']');
                assert_eq!(bare.parse::<std::net::IpAddr>().ok(), Some(ip), "{shown}");
            }
        }
    }
});
