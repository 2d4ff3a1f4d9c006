//! `IpRange`: an inclusive `[start, end]` range of one address family.
//!
//! IPv4 ranges are `u32` pairs, IPv6 ranges `u128` pairs. A range is only built through
//! constructors that check `start <= end` (parse, don't validate). Input forms: an IP, a CIDR,
//! `A-B`, or two integers. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are canonicalized to
//! IPv4 before they become ranges or are looked up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Serialize, Serializer};

use crate::ip_text::IpText;

/// Address family of a range: 4 or 6 (the `family` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Family {
    /// IPv4, keys are `u32`.
    V4,
    /// IPv6, keys are `u128`.
    V6,
}

impl Family {
    /// The number stored in the `family` column.
    pub fn number(self) -> i64 {
        match self {
            Family::V4 => 4,
            Family::V6 => 6,
        }
    }

    /// Parses the `family` column.
    pub fn from_number(n: i64) -> Option<Self> {
        match n {
            4 => Some(Family::V4),
            6 => Some(Family::V6),
            _ => None,
        }
    }
}

/// An inclusive range of addresses of one family. Invariant: `start <= end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpRange {
    /// `[start, end]` as IPv4 integers.
    V4 {
        /// First address.
        start: u32,
        /// Last address (inclusive).
        end: u32,
    },
    /// `[start, end]` as IPv6 integers.
    V6 {
        /// First address.
        start: u128,
        /// Last address (inclusive).
        end: u128,
    },
}

/// Why a range could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// `start > end`.
    #[error("range start {start} is after its end {end}")]
    Reversed {
        /// The start as written.
        start: String,
        /// The end as written.
        end: String,
    },
    /// The two ends are of different families.
    #[error("range mixes IPv4 and IPv6: {0}")]
    MixedFamilies(String),
    /// The text is not an IP, CIDR, `A-B` or integer.
    #[error("not an IP address, CIDR or range: {0:?}")]
    Syntax(String),
    /// A CIDR with host bits set, e.g. `203.0.113.7/24`.
    #[error("{given} has host bits set; did you mean {network}?")]
    HostBits {
        /// The CIDR as written.
        given: String,
        /// The network it would truncate to.
        network: String,
    },
    /// An integer out of range for the family.
    #[error("integer {0} is not a valid address")]
    IntegerOutOfRange(String),
}

impl IpRange {
    /// A range from two addresses of the same family (canonicalized), checking `start <= end`.
    pub fn from_addrs(start: IpAddr, end: IpAddr) -> Result<Self, RangeError> {
        match (start.to_canonical(), end.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => Self::v4(u32::from(a), u32::from(b)),
            (IpAddr::V6(a), IpAddr::V6(b)) => Self::v6(u128::from(a), u128::from(b)),
            _ => Err(RangeError::MixedFamilies(format!("{start}-{end}"))),
        }
    }

    /// A single address.
    pub fn single(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(a) => IpRange::V4 {
                start: u32::from(a),
                end: u32::from(a),
            },
            IpAddr::V6(a) => IpRange::V6 {
                start: u128::from(a),
                end: u128::from(a),
            },
        }
    }

    /// An IPv4 range from integers.
    pub fn v4(start: u32, end: u32) -> Result<Self, RangeError> {
        if start > end {
            return Err(RangeError::Reversed {
                start: Ipv4Addr::from(start).to_string(),
                end: Ipv4Addr::from(end).to_string(),
            });
        }
        Ok(IpRange::V4 { start, end })
    }

    /// An IPv6 range from integers.
    pub fn v6(start: u128, end: u128) -> Result<Self, RangeError> {
        if start > end {
            return Err(RangeError::Reversed {
                start: Ipv6Addr::from(start).to_string(),
                end: Ipv6Addr::from(end).to_string(),
            });
        }
        Ok(IpRange::V6 { start, end })
    }

    /// The range's family.
    pub fn family(&self) -> Family {
        match self {
            IpRange::V4 { .. } => Family::V4,
            IpRange::V6 { .. } => Family::V6,
        }
    }

    /// First address.
    pub fn start_addr(&self) -> IpAddr {
        match *self {
            IpRange::V4 { start, .. } => IpAddr::V4(Ipv4Addr::from(start)),
            IpRange::V6 { start, .. } => IpAddr::V6(Ipv6Addr::from(start)),
        }
    }

    /// Last address.
    pub fn end_addr(&self) -> IpAddr {
        match *self {
            IpRange::V4 { end, .. } => IpAddr::V4(Ipv4Addr::from(end)),
            IpRange::V6 { end, .. } => IpAddr::V6(Ipv6Addr::from(end)),
        }
    }

    /// Whether `ip` (canonicalized) lies in the range. Test-only: lookups go through the
    /// compiled table; the tests' naive oracle and the builtin checks scan ranges with this.
    #[cfg(test)]
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip.to_canonical()) {
            (IpRange::V4 { start, end }, IpAddr::V4(a)) => (start..=end).contains(&u32::from(a)),
            (IpRange::V6 { start, end }, IpAddr::V6(a)) => (start..=end).contains(&u128::from(a)),
            _ => false,
        }
    }

    /// Big-endian bytes of the start (4 bytes for IPv4, 16 for IPv6): the store's key encoding,
    /// which sorts bytewise exactly like the integers.
    pub fn start_bytes(&self) -> Vec<u8> {
        match *self {
            IpRange::V4 { start, .. } => start.to_be_bytes().to_vec(),
            IpRange::V6 { start, .. } => start.to_be_bytes().to_vec(),
        }
    }

    /// Big-endian bytes of the end; see [`IpRange::start_bytes`].
    pub fn end_bytes(&self) -> Vec<u8> {
        match *self {
            IpRange::V4 { end, .. } => end.to_be_bytes().to_vec(),
            IpRange::V6 { end, .. } => end.to_be_bytes().to_vec(),
        }
    }

    /// Rebuilds a range from the store's encoding; `None` if the bytes do not fit the family
    /// or `start > end`.
    pub fn from_bytes(family: Family, start: &[u8], end: &[u8]) -> Option<Self> {
        match family {
            Family::V4 => {
                let s = u32::from_be_bytes(start.try_into().ok()?);
                let e = u32::from_be_bytes(end.try_into().ok()?);
                Self::v4(s, e).ok()
            }
            Family::V6 => {
                let s = u128::from_be_bytes(start.try_into().ok()?);
                let e = u128::from_be_bytes(end.try_into().ok()?);
                Self::v6(s, e).ok()
            }
        }
    }
}

impl fmt::Display for IpRange {
    /// A CIDR when the range is exactly one network (`203.0.113.0/24`, `203.0.113.66/32`),
    /// `A-B` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl IpRange {
    /// Writes the range to `w` as `Display` does, piece by piece (the matched range is part of
    /// every call's reason).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        let (start, end) = (self.start_addr(), self.end_addr());
        let prefix = common_prefix_len(self);
        IpText(start).write_to(w)?;
        match ipnet::IpNet::new(start, prefix) {
            Ok(net) if net.network() == start && net.broadcast() == end => {
                w.write_char('/')?;
                crate::ip_text::write_u8(w, prefix)
            }
            _ => {
                w.write_char('-')?;
                IpText(end).write_to(w)
            }
        }
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl IpRange {
    /// A range from two decimal integers: the CLI's `ranges add 3405803776 3405804031` form.
    ///
    /// When both are at most `u32::MAX` the range is IPv4, otherwise IPv6 (so `0 4294967296` is
    /// the IPv6 range `::-::1:0:0`). Surrounding whitespace is ignored.
    pub fn from_integers(start: &str, end: &str) -> Result<Self, RangeError> {
        let (s, e) = (parse_integer(start)?, parse_integer(end)?);
        match (u32::try_from(s), u32::try_from(e)) {
            (Ok(s), Ok(e)) => Self::v4(s, e),
            _ => Self::v6(s, e),
        }
    }

    /// The fewest CIDR networks that together cover exactly this range, in ascending order.
    ///
    /// `203.0.113.0-203.0.113.255` gives one `/24`; `10.0.0.1-10.0.0.6` gives
    /// `10.0.0.1/32, 10.0.0.2/31, 10.0.0.4/31, 10.0.0.6/32`. Never empty. The builtin tests
    /// check with it that every builtin range is exactly one CIDR; `ipset`'s `hash:net` sets
    /// take networks only (`firewall::iptables`).
    pub fn to_cidrs(self) -> Vec<IpNet> {
        match self {
            IpRange::V4 { start, end } => {
                ipnet::Ipv4Subnets::new(Ipv4Addr::from(start), Ipv4Addr::from(end), 0)
                    .map(IpNet::V4)
                    .collect()
            }
            IpRange::V6 { start, end } => {
                ipnet::Ipv6Subnets::new(Ipv6Addr::from(start), Ipv6Addr::from(end), 0)
                    .map(IpNet::V6)
                    .collect()
            }
        }
    }
}

impl FromStr for IpRange {
    type Err = RangeError;

    /// Parses one of the range forms the CLI and the store accept:
    ///
    /// - a single address: `203.0.113.66`, `2001:db8::1`;
    /// - a CIDR: `203.0.113.0/24`, `2001:db8::/32` (host bits set is [`RangeError::HostBits`]);
    /// - `A-B`, both ends inclusive, spaces around `-` allowed: `203.0.113.10 - 203.0.113.20`;
    /// - a decimal integer: `3405803776` is `203.0.113.0`; above `u32::MAX` it is IPv6.
    ///
    /// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, `::ffff:1.2.3.0/120`) becomes IPv4. Surrounding
    /// whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if let Some((a, b)) = text.split_once('-') {
            let start = parse_addr(a.trim(), text)?;
            let end = parse_addr(b.trim(), text)?;
            return dash_range(start, end);
        }
        if let Some((addr, prefix)) = text.split_once('/') {
            return parse_cidr(addr, prefix, text);
        }
        if is_decimal(text) {
            let n = parse_integer(text)?;
            return Ok(match u32::try_from(n) {
                Ok(v4) => IpRange::single(IpAddr::V4(Ipv4Addr::from(v4))),
                Err(_) => IpRange::single(IpAddr::V6(Ipv6Addr::from(n))),
            });
        }
        parse_addr(text, text).map(IpRange::single)
    }
}

/// Prefix length of the smallest network that could equal this range.
fn common_prefix_len(r: &IpRange) -> u8 {
    match *r {
        IpRange::V4 { start, end } => (start ^ end).leading_zeros() as u8,
        IpRange::V6 { start, end } => (start ^ end).leading_zeros() as u8,
    }
}

/// Parses one address of a larger input `whole` (named in the error).
fn parse_addr(text: &str, whole: &str) -> Result<IpAddr, RangeError> {
    text.parse()
        .map_err(|_| RangeError::Syntax(whole.to_owned()))
}

/// Parses `addr/prefix` (the text `whole`) into the range of the network.
fn parse_cidr(addr: &str, prefix: &str, whole: &str) -> Result<IpRange, RangeError> {
    let syntax = || RangeError::Syntax(whole.to_owned());
    let addr = parse_addr(addr, whole)?;
    if prefix.is_empty() || prefix.len() > 3 || !is_decimal(prefix) {
        return Err(syntax());
    }
    let prefix: u8 = prefix.parse().map_err(|_| syntax())?;
    let net = IpNet::new(addr, prefix).map_err(|_| syntax())?;
    let net = canonical_net(net);
    let network = net.trunc();
    if network != net {
        return Err(RangeError::HostBits {
            given: whole.to_owned(),
            network: network.to_string(),
        });
    }
    // Not `from_addrs`: the net was canonicalized as a whole, and an IPv6 net may end inside the
    // mapped space (`::/80` ends at `::ffff:255.255.255.255`) without being IPv4.
    match net {
        IpNet::V4(n) => IpRange::v4(u32::from(n.network()), u32::from(n.broadcast())),
        IpNet::V6(n) => IpRange::v6(u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// `A-B`: IPv4 when both ends are IPv4 or IPv4-mapped; a plain IPv6 range when both are IPv6 and
/// at most one is mapped (`::-::ffff:255.255.255.255` is the display form of `::/80`).
fn dash_range(start: IpAddr, end: IpAddr) -> Result<IpRange, RangeError> {
    match (start, end) {
        (IpAddr::V6(a), IpAddr::V6(b))
            if a.to_ipv4_mapped().is_none() || b.to_ipv4_mapped().is_none() =>
        {
            IpRange::v6(u128::from(a), u128::from(b))
        }
        _ => IpRange::from_addrs(start, end),
    }
}

/// `::ffff:a.b.c.d/n` with `n >= 96` lies wholly in IPv4-mapped space: rewrite it as IPv4.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(prefix)) =
            (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            // `prefix <= 32` because the IPv6 prefix is at most 128.
            return IpNet::V4(Ipv4Net::new_assert(v4, prefix));
        }
    }
    net
}

/// Non-empty and ASCII digits only (no sign: `u128::from_str` would take a leading `+`).
fn is_decimal(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A decimal integer address key, up to `u128::MAX`.
fn parse_integer(text: &str) -> Result<u128, RangeError> {
    let text = text.trim();
    if !is_decimal(text) {
        return Err(RangeError::Syntax(text.to_owned()));
    }
    // The only failure left for a non-empty digit string is overflow.
    text.parse()
        .map_err(|_| RangeError::IntegerOutOfRange(text.to_owned()))
}

#[cfg(test)]
#[path = "range_tests.rs"]
mod tests;
