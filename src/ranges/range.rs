//! `IpRange`: an inclusive `[start, end]` range of one address family.
//!
//! IPv4 ranges are `u32` pairs, IPv6 ranges `u128` pairs. A range is only built through
//! constructors that check `start <= end` (parse, don't validate). Input forms: an IP, a CIDR,
//! `A-B`, or two integers. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are canonicalized to
//! IPv4 before they become ranges or are looked up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Serialize, Serializer};

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
            IpAddr::V4(a) => IpRange::V4 { start: u32::from(a), end: u32::from(a) },
            IpAddr::V6(a) => IpRange::V6 { start: u128::from(a), end: u128::from(a) },
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

    /// Whether `ip` (canonicalized) lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
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
        let (start, end) = (self.start_addr(), self.end_addr());
        match ipnet::IpNet::new(start, common_prefix_len(self)) {
            Ok(net) if net.network() == start && net.broadcast() == end => write!(f, "{net}"),
            _ => write!(f, "{start}-{end}"),
        }
    }
}

impl Serialize for IpRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Prefix length of the smallest network that could equal this range.
fn common_prefix_len(r: &IpRange) -> u8 {
    match *r {
        IpRange::V4 { start, end } => (start ^ end).leading_zeros() as u8,
        IpRange::V6 { start, end } => (start ^ end).leading_zeros() as u8,
    }
}
