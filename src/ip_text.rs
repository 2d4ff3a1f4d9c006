//! IP addresses as text on the per-call path: the source, the From's host and the matched
//! range go into every reply and log line. `core::fmt` writes an IPv4 address as four `u8`
//! displays, each through the integer formatter: about a thousand instructions an address,
//! run on cold caches at a PBX's few calls a second (issue 18). [`IpText`] writes the digits
//! into a stack buffer instead. IPv6 keeps the standard library's form, whose zero compression
//! must stay exactly `Ipv6Addr`'s (and it is the rarer case).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// Displays an address exactly as [`IpAddr`]'s `Display` does, width and alignment included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpText(pub IpAddr);

impl fmt::Display for IpText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => f.pad(v4_str(a, &mut [0u8; 15])),
            IpAddr::V6(a) => fmt::Display::fmt(&a, f),
        }
    }
}

impl IpText {
    /// Appends the address to `out`, as `Display` writes it.
    pub fn push_to(&self, out: &mut String) {
        // Writing into a `String` cannot fail.
        let _ = self.write_to(out);
    }

    /// Writes the address to `w` as `Display` writes it with no width: IPv4 piece by piece,
    /// not through `core::fmt` (what the reply's and the log line's texts are made with).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => w.write_str(v4_str(a, &mut [0u8; 15])),
            IpAddr::V6(a) => write!(w, "{a}"),
        }
    }
}

/// Writes `n` in decimal to `w` (a prefix length, an octet), without `core::fmt`.
pub fn write_u8<W: fmt::Write>(w: &mut W, n: u8) -> fmt::Result {
    if n >= 100 {
        w.write_char(char::from(b'0' + n / 100))?;
    }
    if n >= 10 {
        w.write_char(char::from(b'0' + n / 10 % 10))?;
    }
    w.write_char(char::from(b'0' + n % 10))
}

/// `a` in dotted decimal, written into `buf`.
fn v4_str(a: Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let len = write_v4(a, buf);
    // Only ASCII digits and dots are written: never empty.
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

/// Writes `a` in dotted decimal into `buf` and returns the length (7 to 15 bytes).
fn write_v4(a: Ipv4Addr, buf: &mut [u8; 15]) -> usize {
    let mut len = 0;
    for (i, octet) in a.octets().into_iter().enumerate() {
        if i > 0 {
            buf[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            buf[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            buf[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        buf[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn edges_read_as_the_standard_library_writes_them() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "100.64.9.99",
            "1.20.199.200",
        ] {
            let ip: IpAddr = text.parse().expect("test address");
            assert_eq!(IpText(ip).to_string(), text);
        }
        let v6: IpAddr = "2001:db8::1".parse().expect("test address");
        assert_eq!(IpText(v6).to_string(), "2001:db8::1");
        let ip = IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8));
        assert_eq!(format!("[{:>9}]", IpText(ip)), "[  8.8.8.8]");
        assert_eq!(format!("[{:<9}]", IpText(ip)), "[8.8.8.8  ]");
    }

    proptest! {
        #[test]
        fn every_address_is_the_standard_form(v4 in any::<u32>(), v6 in any::<u128>(), width in 0usize..20) {
            let a = IpAddr::V4(Ipv4Addr::from(v4));
            prop_assert_eq!(IpText(a).to_string(), a.to_string());
            prop_assert_eq!(format!("{:>width$}", IpText(a)), format!("{:>width$}", a));
            let b = IpAddr::V6(Ipv6Addr::from(v6));
            prop_assert_eq!(IpText(b).to_string(), b.to_string());
            for ip in [a, b] {
                let mut pushed = String::from(">");
                IpText(ip).push_to(&mut pushed);
                prop_assert_eq!(pushed, format!(">{ip}"));
            }
        }
    }
}
