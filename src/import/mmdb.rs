//! MaxMind DB reader: walks every network of a `.mmdb` (GeoIP2/GeoLite2 or ip-location-db
//! schema) and hands `(country, range)` pairs to the collector.
//!
//! Speed: a database has few distinct records (a few hundred to a few thousand) shared by up to
//! millions of networks, so each record is decoded once, by data offset, into a tiny [`Facts`]
//! value (borrowed `&str` codes, no allocation), and every later network costs one hash lookup.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use indicatif::ProgressBar;
use maxminddb::{MaxMindDbError, Reader, WithinOptions};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::collect::{Code, Collector};
use super::{CountryField, Format, ImportError};
use crate::ranges::IpRange;

/// What [`read`] found.
#[derive(Debug)]
pub(super) struct Mmdb {
    pub(super) format: Format,
    pub(super) built_at: Option<i64>,
    pub(super) database_type: String,
    pub(super) collector: Collector,
}

/// Progress is reported every this many networks.
const PROGRESS_STEP: u64 = 16_384;

/// Reads every network of the database in `bytes` (the contents of `path`).
pub(super) fn read(
    path: &Path,
    bytes: Vec<u8>,
    field: CountryField,
    pb: &ProgressBar,
) -> Result<Mmdb, ImportError> {
    let corrupt = |source: MaxMindDbError| ImportError::Mmdb {
        path: path.to_owned(),
        source,
    };
    let reader = Reader::from_source(bytes).map_err(corrupt)?;
    let meta = reader.metadata();
    let type_hint = schema_hint(&meta.database_type);
    let mut schema: Option<Schema> = None;
    let mut facts_at: HashMap<usize, Facts> = HashMap::new();
    let mut collector = Collector::new();
    for found in reader.networks(WithinOptions::default()).map_err(corrupt)? {
        let found = found.map_err(corrupt)?;
        collector.networks += 1;
        if collector.networks.is_multiple_of(PROGRESS_STEP) {
            pb.inc(PROGRESS_STEP);
        }
        // The default options yield only networks with data.
        let Some(offset) = found.offset() else {
            continue;
        };
        let facts = match facts_at.get(&offset) {
            Some(facts) => *facts,
            None => {
                let record = match found.decode::<Record<'_>>() {
                    Ok(record) => record.unwrap_or_default(),
                    // A well-formed record of another shape (a string, `country_code: 5`)
                    // has no country; only a record that does not decode at all is corrupt.
                    Err(error) => match found.decode::<IgnoredAny>() {
                        Ok(_) => Record::default(),
                        Err(_) => return Err(corrupt(error)),
                    },
                };
                let facts = Facts::of(&record);
                record.name_countries(&mut collector);
                facts_at.insert(offset, facts);
                facts
            }
        };
        if schema.is_none() {
            schema = facts.schema(type_hint);
        }
        let Some(code) = schema.and_then(|s| facts.code(s, field)) else {
            collector.skipped += 1;
            continue;
        };
        let net = found.network().map_err(corrupt)?;
        let Some(range) = network_range(net.network(), net.prefix()) else {
            collector.skipped += 1;
            continue;
        };
        collector.add(code, range);
        if let IpRange::V6 { start: 0, end } = range {
            // An IPv6 record above the IPv4 subtree (e.g. `::/64` in a database without one)
            // is also what every IPv4 lookup finds.
            if end >= u128::from(u32::MAX) {
                collector.add(
                    code,
                    IpRange::V4 {
                        start: 0,
                        end: u32::MAX,
                    },
                );
            }
        }
    }
    pb.inc(collector.networks % PROGRESS_STEP);
    let format = match schema {
        Some(Schema::CountryCode) => Format::MmdbCountryCode,
        Some(Schema::GeoIp2) => Format::MmdbGeoIp2,
        None if collector.networks == 0 => Format::MmdbGeoIp2,
        None => {
            return Err(ImportError::UnknownSchema {
                path: path.to_owned(),
                database_type: meta.database_type.clone(),
            })
        }
    };
    Ok(Mmdb {
        format,
        built_at: i64::try_from(meta.build_epoch).ok(),
        database_type: meta.database_type.clone(),
        collector,
    })
}

/// The two record schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// `{"country_code": "US"}` (ip-location-db).
    CountryCode,
    /// `{"country": {"iso_code": "US", ...}, "registered_country": {...}, ...}`.
    GeoIp2,
}

/// The schema the database type suggests, used only when a record has both kinds of field.
fn schema_hint(database_type: &str) -> Schema {
    let t = database_type.to_ascii_lowercase();
    if t.starts_with("geoip") || t.starts_with("geolite") || t.starts_with("dbip-") {
        Schema::GeoIp2
    } else {
        Schema::CountryCode
    }
}

/// The fields of a record this reader looks at; everything else is skipped undecoded.
#[derive(Debug, Default, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<Place<'a>>,
    #[serde(borrow)]
    registered_country: Option<Place<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Place<'a> {
    #[serde(borrow)]
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    names: Option<Names<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Names<'a> {
    #[serde(borrow)]
    en: Option<&'a str>,
}

impl Record<'_> {
    /// Gives the collector the English names of the record's countries.
    fn name_countries(&self, collector: &mut Collector) {
        for place in [&self.country, &self.registered_country]
            .into_iter()
            .flatten()
        {
            let code = place.iso_code.and_then(|c| Code::parse(c.as_bytes()));
            let name = place.names.as_ref().and_then(|n| n.en);
            if let (Some(code), Some(name)) = (code, name) {
                collector.name(code, name);
            }
        }
    }
}

/// One country field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Iso {
    Absent,
    Valid(Code),
    /// Present but not two letters.
    Invalid,
}

impl Iso {
    fn of(text: Option<&str>) -> Self {
        match text {
            None => Iso::Absent,
            Some(t) => Code::parse(t.as_bytes()).map_or(Iso::Invalid, Iso::Valid),
        }
    }

    fn code(self) -> Option<Code> {
        match self {
            Iso::Valid(code) => Some(code),
            Iso::Absent | Iso::Invalid => None,
        }
    }
}

/// A decoded record, reduced to its country fields.
#[derive(Debug, Clone, Copy)]
struct Facts {
    country_code: Iso,
    country: Iso,
    registered: Iso,
}

impl Facts {
    fn of(record: &Record<'_>) -> Self {
        let iso = |place: &Option<Place<'_>>| Iso::of(place.as_ref().and_then(|p| p.iso_code));
        Facts {
            country_code: Iso::of(record.country_code),
            country: iso(&record.country),
            registered: iso(&record.registered_country),
        }
    }

    /// The schema this record shows, if it has any country field.
    fn schema(self, hint: Schema) -> Option<Schema> {
        let flat = self.country_code != Iso::Absent;
        let nested = self.country != Iso::Absent || self.registered != Iso::Absent;
        match (flat, nested) {
            (true, true) => Some(hint),
            (true, false) => Some(Schema::CountryCode),
            (false, true) => Some(Schema::GeoIp2),
            (false, false) => None,
        }
    }

    fn code(self, schema: Schema, field: CountryField) -> Option<Code> {
        match (schema, field) {
            (Schema::CountryCode, _) => self.country_code.code(),
            (Schema::GeoIp2, CountryField::Country) => self.country.code(),
            (Schema::GeoIp2, CountryField::Registered) => self.registered.code(),
            (Schema::GeoIp2, CountryField::CountryThenRegistered) => {
                self.country.code().or(self.registered.code())
            }
        }
    }
}

/// The range of the network `addr/prefix` (host bits ignored); `None` for a prefix too long.
fn network_range(addr: IpAddr, prefix: u8) -> Option<IpRange> {
    match addr {
        IpAddr::V4(a) if prefix <= 32 => {
            let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let a = u32::from(a);
            Some(IpRange::V4 {
                start: a & !host,
                end: a | host,
            })
        }
        IpAddr::V6(a) if prefix <= 128 => {
            let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            let a = u128::from(a);
            Some(IpRange::V6 {
                start: a & !host,
                end: a | host,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_ranges() {
        let r = |a: &str, p| network_range(a.parse().unwrap(), p).map(|r| r.to_string());
        assert_eq!(r("81.2.69.160", 27).as_deref(), Some("81.2.69.160/27"));
        assert_eq!(r("81.2.69.170", 27).as_deref(), Some("81.2.69.160/27"));
        assert_eq!(r("0.0.0.0", 0).as_deref(), Some("0.0.0.0/0"));
        assert_eq!(
            r("255.255.255.255", 32).as_deref(),
            Some("255.255.255.255/32")
        );
        assert_eq!(r("::", 0).as_deref(), Some("::/0"));
        assert_eq!(r("2001:218::", 32).as_deref(), Some("2001:218::/32"));
        assert_eq!(r("::1", 128).as_deref(), Some("::1/128"));
        assert_eq!(r("1.2.3.4", 33), None);
        assert_eq!(r("::", 129), None);
    }

    #[test]
    fn facts_pick_the_field() {
        let us = Code::parse(b"US");
        let fr = Code::parse(b"FR");
        let rec = Record {
            country_code: None,
            country: Some(Place {
                iso_code: Some("fr"),
                names: None,
            }),
            registered_country: Some(Place {
                iso_code: Some("US"),
                names: None,
            }),
        };
        let f = Facts::of(&rec);
        assert_eq!(f.schema(Schema::CountryCode), Some(Schema::GeoIp2));
        assert_eq!(f.code(Schema::GeoIp2, CountryField::Country), fr);
        assert_eq!(f.code(Schema::GeoIp2, CountryField::Registered), us);
        assert_eq!(
            f.code(Schema::GeoIp2, CountryField::CountryThenRegistered),
            fr
        );
        assert_eq!(f.code(Schema::CountryCode, CountryField::Country), None);

        let rec = Record {
            country_code: None,
            country: Some(Place {
                iso_code: Some("F1"),
                names: None,
            }),
            registered_country: Some(Place {
                iso_code: Some("US"),
                names: None,
            }),
        };
        let f = Facts::of(&rec);
        assert_eq!(f.country, Iso::Invalid);
        assert_eq!(
            f.code(Schema::GeoIp2, CountryField::CountryThenRegistered),
            us
        );
        assert_eq!(f.code(Schema::GeoIp2, CountryField::Country), None);

        let rec = Record {
            country_code: Some("US"),
            ..Record::default()
        };
        let f = Facts::of(&rec);
        assert_eq!(f.schema(Schema::GeoIp2), Some(Schema::CountryCode));
        assert_eq!(f.code(Schema::CountryCode, CountryField::Registered), us);
        assert_eq!(Facts::of(&Record::default()).schema(Schema::GeoIp2), None);
        assert_eq!(schema_hint("GeoLite2-Country"), Schema::GeoIp2);
        assert_eq!(schema_hint("DBIP-Country-Lite"), Schema::GeoIp2);
        assert_eq!(schema_hint("country ipvAll"), Schema::CountryCode);
    }
}
