//! The per-country accumulator every reader fills: country codes as small integers, ranges
//! appended (and joined on the fly while the input is sorted), names, and counters.

use std::collections::BTreeMap;

use super::merge::{join, merge};
use super::CountryRanges;
use crate::ranges::IpRange;

/// Number of possible two-letter codes.
const CODES: usize = 26 * 26;

/// An upper-case ISO 3166-1 alpha-2 code, stored as `0..676`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Code(u16);

impl Code {
    /// Two ASCII letters, any case; anything else is `None`.
    pub(super) fn parse(text: &[u8]) -> Option<Self> {
        match text {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                let a = u16::from(a.to_ascii_uppercase() - b'A');
                let b = u16::from(b.to_ascii_uppercase() - b'A');
                Some(Code(a * 26 + b))
            }
            _ => None,
        }
    }

    fn index(self) -> usize {
        usize::from(self.0)
    }

    fn from_index(index: usize) -> Option<Self> {
        u16::try_from(index)
            .ok()
            .filter(|&i| usize::from(i) < CODES)
            .map(Code)
    }

    fn text(self) -> String {
        // Both quotients are < 26 by construction, so the bytes are ASCII letters.
        let a = char::from(b'A' + (self.0 / 26) as u8);
        let b = char::from(b'A' + (self.0 % 26) as u8);
        [a, b].iter().collect()
    }
}

/// Ranges, names and counters gathered while reading.
#[derive(Debug)]
pub(super) struct Collector {
    ranges: Vec<Vec<IpRange>>,
    names: Vec<Option<String>>,
    /// Networks (or rows) read, including skipped ones.
    pub(super) networks: u64,
    /// Networks without a usable country code.
    pub(super) skipped: u64,
}

impl Collector {
    pub(super) fn new() -> Self {
        Collector {
            ranges: vec![Vec::new(); CODES],
            names: vec![None; CODES],
            networks: 0,
            skipped: 0,
        }
    }

    /// Adds a range to a country, joining it to the previous one when they touch.
    pub(super) fn add(&mut self, code: Code, range: IpRange) {
        let list = &mut self.ranges[code.index()];
        if let Some(last) = list.last_mut() {
            if let Some(joined) = join(*last, range) {
                *last = joined;
                return;
            }
        }
        list.push(range);
    }

    /// Records a country's name unless it already has one.
    pub(super) fn name(&mut self, code: Code, name: &str) {
        let slot = &mut self.names[code.index()];
        if slot.is_none() && !name.is_empty() {
            *slot = Some(name.to_owned());
        }
    }

    /// The countries with at least one range, each merged.
    pub(super) fn finish(self) -> BTreeMap<String, CountryRanges> {
        let mut out = BTreeMap::new();
        for (index, (ranges, name)) in self.ranges.into_iter().zip(self.names).enumerate() {
            if ranges.is_empty() {
                continue;
            }
            if let Some(code) = Code::from_index(index) {
                out.insert(
                    code.text(),
                    CountryRanges {
                        name,
                        ranges: merge(ranges),
                    },
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(Code::parse(b"us").map(Code::text).as_deref(), Some("US"));
        assert_eq!(Code::parse(b"De").map(Code::text).as_deref(), Some("DE"));
        assert_eq!(Code::parse(b"AA").map(Code::text).as_deref(), Some("AA"));
        assert_eq!(Code::parse(b"zz").map(Code::text).as_deref(), Some("ZZ"));
        for bad in [
            &b""[..],
            b"U",
            b"USA",
            b"U1",
            b"--",
            b" U",
            "Ü".as_bytes(),
            b"\xff\xfe",
        ] {
            assert_eq!(Code::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Code::from_index(CODES), None);
    }

    #[test]
    fn collector_joins_merges_and_names() {
        let us = Code::parse(b"US").unwrap();
        let de = Code::parse(b"DE").unwrap();
        let mut c = Collector::new();
        c.add(us, IpRange::V4 { start: 10, end: 19 });
        c.add(us, IpRange::V4 { start: 20, end: 29 });
        c.add(us, IpRange::V6 { start: 1, end: 2 });
        c.add(us, IpRange::V4 { start: 0, end: 9 });
        c.add(de, IpRange::V4 { start: 40, end: 49 });
        c.name(us, "United States");
        c.name(us, "Other");
        c.name(de, "");
        let map = c.finish();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["DE", "US"]);
        assert_eq!(map["US"].name.as_deref(), Some("United States"));
        assert_eq!(map["DE"].name, None);
        assert_eq!(
            map["US"].ranges,
            [
                IpRange::V4 { start: 0, end: 29 },
                IpRange::V6 { start: 1, end: 2 }
            ]
        );
    }
}
