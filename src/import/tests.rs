//! Tests of [`read`] on the real and test databases in the shared data directory
//! (`$IPCOUNTRY_DATA`, default `../shared/data`): the known lookups and merged-range counts
//! from its README, cross-checks between formats, and corrupt inputs.
//!
//! Each full-size file is read once per country field and shared through a `OnceLock`.

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use serde_json::Value;

use super::merge::merge;
use super::*;

fn full(name: &str) -> PathBuf {
    data_dir().join("full").join(name)
}

fn test_db(name: &str) -> PathBuf {
    data_dir().join("maxmind-test-data").join(name)
}

fn opts(country_field: CountryField) -> ImportOptions {
    ImportOptions {
        country_field,
        progress: false,
    }
}

/// Reads and reports the time taken (visible with `--nocapture`).
fn read_timed(paths: &[PathBuf], field: CountryField) -> Catalog {
    let started = Instant::now();
    let catalog = match read(paths, &opts(field)) {
        Ok(catalog) => catalog,
        Err(e) => panic!("{paths:?}: {e} ({e:?})"),
    };
    eprintln!(
        "read {:?} ({field:?}): {} networks in {:.2?}",
        paths
            .iter()
            .map(|p| p.file_name().unwrap_or_default())
            .collect::<Vec<_>>(),
        catalog.networks,
        started.elapsed()
    );
    catalog
}

fn geolite(field: CountryField) -> &'static Catalog {
    static COUNTRY: OnceLock<Catalog> = OnceLock::new();
    static REGISTERED: OnceLock<Catalog> = OnceLock::new();
    static BOTH: OnceLock<Catalog> = OnceLock::new();
    let cell = match field {
        CountryField::Country => &COUNTRY,
        CountryField::Registered => &REGISTERED,
        CountryField::CountryThenRegistered => &BOTH,
    };
    cell.get_or_init(|| read_timed(&[full("GeoLite2-Country-2019-12-24.mmdb")], field))
}

fn dbip_mmdb() -> &'static Catalog {
    static CELL: OnceLock<Catalog> = OnceLock::new();
    CELL.get_or_init(|| {
        read_timed(
            &[full("dbip-country-lite-2026-06.mmdb")],
            CountryField::default(),
        )
    })
}

fn dbip_csv() -> &'static Catalog {
    static CELL: OnceLock<Catalog> = OnceLock::new();
    CELL.get_or_init(|| {
        read_timed(
            &[
                full("dbip-country-ipv4.csv.gz"),
                full("dbip-country-ipv6.csv.gz"),
            ],
            CountryField::default(),
        )
    })
}

/// Whether the sorted, disjoint `ranges` cover `ip` (binary search).
fn covers(ranges: &[IpRange], ip: IpAddr) -> bool {
    // The last range starting at or before `ip` in its family is the only candidate.
    let key = match IpRange::single(ip) {
        IpRange::V4 { start, .. } => IpRange::V4 {
            start,
            end: u32::MAX,
        },
        IpRange::V6 { start, .. } => IpRange::V6 {
            start,
            end: u128::MAX,
        },
    };
    let i = ranges.partition_point(|r| *r <= key);
    i > 0 && ranges[i - 1].contains(ip)
}

/// The countries whose ranges contain `ip` (at most one in a sane catalog).
fn countries_of<'a>(catalog: &'a Catalog, ip: &str) -> Vec<&'a str> {
    let ip: IpAddr = ip.parse().unwrap();
    catalog
        .countries
        .iter()
        .filter(|(_, c)| covers(&c.ranges, ip))
        .map(|(cc, _)| cc.as_str())
        .collect()
}

fn country_of<'a>(catalog: &'a Catalog, ip: &str) -> Option<&'a str> {
    let found = countries_of(catalog, ip);
    assert!(found.len() <= 1, "{ip} is in several countries: {found:?}");
    found.first().copied()
}

/// Asserts the country `catalog` puts each address of `cases` in (`None`: no country).
fn assert_countries(catalog: &Catalog, cases: &[(&str, Option<&str>)]) {
    for &(ip, cc) in cases {
        assert_eq!(country_of(catalog, ip), cc, "{ip}");
    }
}

/// Addresses that GeoLite2 (2019) and DB-IP (2026) put in the same country.
const AGREED: [(&str, Option<&str>); 7] = [
    ("8.8.8.8", Some("US")),
    ("193.99.144.80", Some("DE")),
    ("114.114.114.114", Some("CN")),
    ("81.2.69.160", Some("GB")),
    ("2001:200::1", Some("JP")),
    ("217.160.0.1", Some("DE")),
    ("2a00:1450:4001:80b::200e", Some("DE")),
];

/// (IPv4 ranges, IPv6 ranges, IPv4 addresses) of a country.
fn counts(catalog: &Catalog, cc: &str) -> (usize, usize, u64) {
    let ranges = &catalog.countries[cc].ranges;
    let mut out = (0, 0, 0);
    for r in ranges {
        match *r {
            IpRange::V4 { start, end } => {
                out.0 += 1;
                out.2 += u64::from(end - start) + 1;
            }
            IpRange::V6 { .. } => out.1 += 1,
        }
    }
    out
}

/// Asserts the README's merged-range counts: [`counts`] of the countries in `full`, and the
/// range counts alone (IPv4, IPv6) of those in `ranges`.
fn assert_counts(
    catalog: &Catalog,
    full: &[(&str, (usize, usize, u64))],
    ranges: &[(&str, (usize, usize))],
) {
    for &(cc, want) in full {
        assert_eq!(counts(catalog, cc), want, "{cc}");
    }
    for &(cc, want) in ranges {
        let (v4, v6, _) = counts(catalog, cc);
        assert_eq!((v4, v6), want, "{cc}");
    }
}

/// Every country's ranges are merged, and no address belongs to two countries.
fn assert_well_formed(catalog: &Catalog) {
    let mut all = Vec::new();
    for (cc, c) in &catalog.countries {
        assert!(
            cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase()),
            "{cc}"
        );
        assert!(!c.ranges.is_empty(), "{cc}");
        assert_eq!(merge(c.ranges.clone()), c.ranges, "{cc} is not merged");
        all.extend(c.ranges.iter().map(|r| (*r, cc)));
    }
    all.sort();
    for pair in all.windows(2) {
        let ((a, ca), (b, cb)) = (pair[0], pair[1]);
        let overlap = match (a, b) {
            (IpRange::V4 { end, .. }, IpRange::V4 { start, .. }) => start <= end,
            (IpRange::V6 { end, .. }, IpRange::V6 { start, .. }) => start <= end,
            _ => false,
        };
        assert!(!overlap, "{a} ({ca}) overlaps {b} ({cb})");
    }
}

/// No IPv6 range touches `net` (used for the alias subtrees and the IPv4 space `::/96`).
fn assert_no_v6_in(catalog: &Catalog, net: &str) {
    let (addr, prefix) = net.split_once('/').unwrap();
    let net = ipnet::Ipv6Net::new(addr.parse().unwrap(), prefix.parse().unwrap()).unwrap();
    let (start, end) = (u128::from(net.network()), u128::from(net.broadcast()));
    for (cc, c) in &catalog.countries {
        for r in &c.ranges {
            if let IpRange::V6 { start: s, end: e } = *r {
                assert!(e < start || s > end, "{cc} has {r} inside {net}");
            }
        }
    }
}

/// Equal countries, names and ranges; on failure, says where they differ.
fn assert_same(a: &Catalog, b: &Catalog, what: &str) {
    let mut diff = Vec::new();
    for cc in a.countries.keys().chain(b.countries.keys()) {
        match (a.countries.get(cc), b.countries.get(cc)) {
            // Names may differ between records of one country (first seen wins): only their
            // presence is compared.
            (Some(x), Some(y)) if x.ranges == y.ranges && x.name.is_some() == y.name.is_some() => {}
            (Some(x), Some(y)) if x.name.is_some() != y.name.is_some() => {
                diff.push(format!("{cc}: name {:?} vs {:?}", x.name, y.name));
            }
            (Some(x), Some(y)) => {
                let only = |p: &[IpRange], q: &[IpRange]| -> Vec<String> {
                    p.iter()
                        .filter(|r| !q.contains(r))
                        .take(5)
                        .map(|r| r.to_string())
                        .collect()
                };
                diff.push(format!(
                    "{cc}: only left {:?}, only right {:?}",
                    only(&x.ranges, &y.ranges),
                    only(&y.ranges, &x.ranges)
                ));
            }
            (x, y) => diff.push(format!("{cc}: {} vs {}", x.is_some(), y.is_some())),
        }
    }
    diff.dedup();
    assert!(diff.is_empty(), "{what}: {}", diff.join("\n"));
}

fn cc_strings(catalog: &Catalog) -> Vec<&str> {
    catalog.countries.keys().map(String::as_str).collect()
}

// ---------------------------------------------------------------------------------------
// Full-size GeoLite2 (GeoIP2 schema)
// ---------------------------------------------------------------------------------------

#[test]
fn geolite2_full_by_country_iso_code() {
    let cat = geolite(CountryField::Country);
    assert_eq!(cat.format, Format::MmdbGeoIp2);
    assert_eq!(cat.database_type.as_deref(), Some("GeoLite2-Country"));
    assert_eq!(cat.built_at, Some(1_577_209_214));
    assert_eq!(cat.source, [full("GeoLite2-Country-2019-12-24.mmdb")]);
    assert_eq!(cat.networks, 447_857);
    assert_eq!(cat.countries.len(), 250);
    assert_countries(cat, &AGREED);
    assert_countries(
        cat,
        &[
            ("202.108.22.5", Some("CN")),
            ("9.9.9.9", Some("FR")),
            // v4-mapped input is canonicalized by `contains`, so it finds the IPv4 range.
            ("::ffff:8.8.8.8", Some("US")),
            ("10.0.0.1", None),
            ("127.0.0.1", None),
            ("2.16.0.1", None),
            ("23.128.130.1", None),
        ],
    );
    // By country.iso_code.
    assert_counts(
        cat,
        &[
            ("US", (26_517, 8_164, 1_576_554_097)),
            ("DE", (13_295, 3_733, 129_010_561)),
            ("CN", (4_977, 1_894, 344_850_718)),
        ],
        &[("GB", (13_218, 2_871)), ("FR", (11_948, 2_322))],
    );
    assert_eq!(cat.countries["US"].name.as_deref(), Some("United States"));
    assert_eq!(cat.countries["DE"].name.as_deref(), Some("Germany"));
    // The alias subtrees are not read: no IPv6 copy of the IPv4 space.
    assert_no_v6_in(cat, "::ffff:0:0/96");
    assert_no_v6_in(cat, "2002::/16");
    assert_no_v6_in(cat, "::/96");
    assert_well_formed(cat);
}

#[test]
fn geolite2_full_by_registered_country() {
    let cat = geolite(CountryField::Registered);
    assert_countries(
        cat,
        &[
            ("9.9.9.9", Some("US")),
            ("2a00:1450:4001:80b::200e", Some("IE")),
            ("23.128.130.1", Some("US")),
            ("8.8.8.8", Some("US")),
            ("10.0.0.1", None),
        ],
    );
    assert_eq!(cat.networks, 447_857);
    assert_well_formed(cat);
}

#[test]
fn geolite2_full_falls_back_to_registered_country() {
    let cat = geolite(CountryField::CountryThenRegistered);
    assert_countries(
        cat,
        &[
            ("9.9.9.9", Some("FR")),
            ("2a00:1450:4001:80b::200e", Some("DE")),
            // Only registered_country: US by the fallback.
            ("23.128.130.1", Some("US")),
            // Only a continent: no country either way.
            ("2.16.0.1", None),
        ],
    );
    // The fallback only adds addresses: every country covers at least what it did by
    // country.iso_code alone.
    let by_country = geolite(CountryField::Country);
    for (cc, c) in &by_country.countries {
        let with = &cat.countries[cc].ranges;
        for r in &c.ranges {
            for ip in [r.start_addr(), r.end_addr()] {
                assert!(covers(with, ip), "{cc} lost {r}");
            }
        }
    }
    assert!(counts(cat, "US").2 > counts(by_country, "US").2);
    assert_well_formed(cat);
}

// ---------------------------------------------------------------------------------------
// Full-size DB-IP (ip-location-db schema), mmdb and CSV
// ---------------------------------------------------------------------------------------

#[test]
fn dbip_full_mmdb() {
    let cat = dbip_mmdb();
    assert_eq!(cat.format, Format::MmdbCountryCode);
    assert_eq!(cat.database_type.as_deref(), Some("country ipvAll"));
    assert_eq!(cat.built_at, Some(1_780_345_978));
    assert_eq!(cat.networks, 1_367_495);
    assert_eq!(cat.countries.len(), 250);
    assert_countries(cat, &AGREED);
    assert_countries(
        cat,
        &[
            ("1.1.1.1", Some("AU")),
            ("2.16.0.1", Some("BR")),
            ("9.9.9.9", Some("US")),
            // 2002::/16 is a real record in DB-IP, not an alias.
            ("2002:808:808::1", Some("US")),
            ("10.0.0.1", None),
            ("127.0.0.1", None),
        ],
    );
    // Merged mmdb networks equal the CSV rows.
    assert_counts(
        cat,
        &[
            ("US", (63_940, 33_418, 1_420_620_701)),
            ("DE", (19_742, 11_463, 141_239_928)),
            ("CN", (5_352, 4_452, 352_736_933)),
        ],
        &[("GB", (26_730, 10_990)), ("FR", (14_767, 5_373))],
    );
    assert_eq!(cat.countries["US"].name, None);
    assert_no_v6_in(cat, "::/96");
    assert_well_formed(cat);
}

#[test]
fn dbip_full_csv_equals_the_mmdb() {
    let csv = dbip_csv();
    assert_eq!(csv.format, Format::RangeCsv);
    assert_eq!(csv.networks, 355_800 + 345_868);
    assert_eq!(csv.built_at, None);
    assert_eq!(csv.database_type, None);
    assert_eq!(counts(csv, "US"), (63_940, 33_418, 1_420_620_701));
    assert_eq!(country_of(csv, "1.1.1.1"), Some("AU"));
    let mmdb = dbip_mmdb();
    for cc in ["US", "DE", "CN", "GB", "FR", "AU", "JP"] {
        assert_eq!(csv.countries[cc], mmdb.countries[cc], "{cc}");
    }
    // And in fact every country, range for range.
    assert_eq!(cc_strings(csv), cc_strings(mmdb));
    assert_same(csv, mmdb, "dbip");
    assert_well_formed(csv);
}

// ---------------------------------------------------------------------------------------
// MaxMind's test databases
// ---------------------------------------------------------------------------------------

#[test]
fn geoip2_country_test_lookups() {
    let path = test_db("GeoIP2-Country-Test.mmdb");
    let by_country = read_timed(std::slice::from_ref(&path), CountryField::Country);
    let by_registered = read_timed(std::slice::from_ref(&path), CountryField::Registered);
    assert_eq!(by_country.format, Format::MmdbGeoIp2);
    assert_eq!(by_country.database_type.as_deref(), Some("GeoIP2-Country"));
    assert_eq!(by_country.networks, 345);
    for (ip, country, registered) in [
        ("81.2.69.160", "GB", "US"),
        ("89.160.20.112", "SE", "DE"),
        ("216.160.83.56", "US", "GB"),
        ("2001:218::1", "JP", "JP"),
        ("2a02:cf40::1", "NO", "NO"),
        ("175.16.199.1", "CN", "CN"),
        ("202.196.224.1", "PH", "PH"),
        ("::ffff:81.2.69.160", "GB", "US"),
    ] {
        assert_eq!(country_of(&by_country, ip), Some(country), "{ip}");
        assert_eq!(country_of(&by_registered, ip), Some(registered), "{ip}");
    }
    assert_countries(&by_country, &[("8.8.8.8", None), ("1.1.1.1", None)]);
    // `::81.2.69.160/123` (and its GB neighbours `/127`, `/124`, `/124`) came out as IPv4.
    let gb: Vec<String> = by_country.countries["GB"]
        .ranges
        .iter()
        .filter(|r| r.contains("81.2.69.160".parse().unwrap()))
        .map(ToString::to_string)
        .collect();
    assert_eq!(gb, ["81.2.69.142-81.2.69.207"]);
    assert!(by_registered.countries["US"]
        .ranges
        .contains(&"81.2.69.142-81.2.69.207".parse().unwrap()));
    assert_no_v6_in(&by_country, "::/96");
    assert_eq!(by_country.countries["JP"].name.as_deref(), Some("Japan"));
    assert_well_formed(&by_country);

    let lite = read_timed(
        &[test_db("GeoLite2-Country-Test.mmdb")],
        CountryField::Country,
    );
    assert_eq!(lite.networks, 244);
    assert_countries(
        &lite,
        &[
            ("81.2.69.160", Some("GB")),
            ("2001:218::1", Some("JP")),
            ("175.16.199.1", None),
            ("2001:480::1", Some("US")),
        ],
    );
}

/// The expected catalog, built from MaxMind's JSON source of a test database: IPv4 networks
/// are written `::a.b.c.d/(96+n)` (or plainly); host bits are ignored.
fn catalog_from_json(json: &Path, field: CountryField) -> BTreeMap<String, Vec<IpRange>> {
    let entries: Vec<BTreeMap<String, Value>> =
        serde_json::from_str(&fs::read_to_string(json).unwrap()).unwrap();
    let mut by_cc: BTreeMap<String, Vec<IpRange>> = BTreeMap::new();
    for (cidr, record) in entries.iter().flatten() {
        let iso = |key: &str| record[key]["iso_code"].as_str().map(str::to_owned);
        let code = match field {
            CountryField::Country => iso("country"),
            CountryField::Registered => iso("registered_country"),
            CountryField::CountryThenRegistered => iso("country").or(iso("registered_country")),
        };
        let Some(code) = code else { continue };
        by_cc.entry(code).or_default().push(json_network(cidr));
    }
    by_cc.into_iter().map(|(cc, r)| (cc, merge(r))).collect()
}

fn json_network(cidr: &str) -> IpRange {
    let (addr, prefix) = cidr.split_once('/').unwrap();
    let prefix: u32 = prefix.parse().unwrap();
    match addr.parse::<IpAddr>().unwrap() {
        IpAddr::V6(a) if addr.starts_with("::") && addr.contains('.') => {
            let a = u32::from_be_bytes(a.octets()[12..].try_into().unwrap());
            let host = u32::MAX.checked_shr(prefix - 96).unwrap_or(0);
            IpRange::V4 {
                start: a & !host,
                end: a | host,
            }
        }
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
            IpRange::V4 {
                start: u32::from(a) & !host,
                end: u32::from(a) | host,
            }
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
            IpRange::V6 {
                start: u128::from(a) & !host,
                end: u128::from(a) | host,
            }
        }
    }
}

fn ranges_only(catalog: &Catalog) -> BTreeMap<String, Vec<IpRange>> {
    catalog
        .countries
        .iter()
        .map(|(cc, c)| (cc.clone(), c.ranges.clone()))
        .collect()
}

#[test]
fn test_databases_match_their_json_sources() {
    for name in ["GeoIP2-Country-Test", "GeoLite2-Country-Test"] {
        let json = test_db(&format!("source-data/{name}.json"));
        for field in [
            CountryField::Country,
            CountryField::Registered,
            CountryField::CountryThenRegistered,
        ] {
            let cat = read_timed(&[test_db(&format!("{name}.mmdb"))], field);
            assert_eq!(
                ranges_only(&cat),
                catalog_from_json(&json, field),
                "{name} {field:?}"
            );
        }
    }
}

/// Writes a GeoLite2 CSV set (blocks + locations) from a test database's JSON source.
fn geolite_csv_from_json(json: &Path, dir: &Path) {
    let entries: Vec<BTreeMap<String, Value>> =
        serde_json::from_str(&fs::read_to_string(json).unwrap()).unwrap();
    let mut places: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let header = "network,geoname_id,registered_country_geoname_id,\
                  represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider\n";
    let (mut v4, mut v6) = (header.to_owned(), header.to_owned());
    for (cidr, record) in entries.iter().flatten() {
        let mut id = |key: &str| -> String {
            let place = &record[key];
            let Some(id) = place["geoname_id"].as_u64() else {
                return String::new();
            };
            let iso = place["iso_code"].as_str().unwrap_or_default().to_owned();
            let name = place["names"]["en"].as_str().unwrap_or_default().to_owned();
            places.insert(id, (iso, name));
            id.to_string()
        };
        let country = match id("country") {
            none if none.is_empty() => id("continent"),
            some => some,
        };
        let registered = id("registered_country");
        let net = json_network(cidr).to_cidrs()[0];
        let row = format!("{net},{country},{registered},,0,0\n");
        if net.addr().is_ipv4() {
            v4.push_str(&row)
        } else {
            v6.push_str(&row)
        }
    }
    let mut locations = String::from(
        "geoname_id,locale_code,continent_code,continent_name,country_iso_code,country_name,\
         is_in_european_union\n",
    );
    for (id, (iso, name)) in places {
        locations.push_str(&format!("{id},en,XX,Somewhere,{iso},\"{name}\",0\n"));
    }
    fs::write(dir.join("Test-Country-Blocks-IPv4.csv"), v4).unwrap();
    fs::write(dir.join("Test-Country-Blocks-IPv6.csv"), v6).unwrap();
    fs::write(dir.join("Test-Country-Locations-en.csv"), locations).unwrap();
}

#[test]
fn geolite2_csv_equals_the_mmdb() {
    for name in ["GeoIP2-Country-Test", "GeoLite2-Country-Test"] {
        let dir = tempfile::tempdir().unwrap();
        geolite_csv_from_json(&test_db(&format!("source-data/{name}.json")), dir.path());
        for field in [
            CountryField::Country,
            CountryField::Registered,
            CountryField::CountryThenRegistered,
        ] {
            let csv = read_timed(&[dir.path().to_owned()], field);
            let mmdb = read_timed(&[test_db(&format!("{name}.mmdb"))], field);
            assert_eq!(csv.format, Format::GeoLite2Csv);
            assert_eq!(csv.database_type.as_deref(), Some("Test-Country"));
            assert_eq!(csv.networks, mmdb.networks, "{name}");
            assert_same(&csv, &mmdb, &format!("{name} {field:?}"));
        }
    }
}

#[test]
fn gzipped_mmdb_reads_the_same() {
    use std::io::Write;
    let path = test_db("GeoIP2-Country-Test.mmdb");
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("copy.mmdb.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&fs::read(&path).unwrap()).unwrap();
    fs::write(&gz, enc.finish().unwrap()).unwrap();
    let plain = read_timed(&[path], CountryField::default());
    let zipped = read_timed(std::slice::from_ref(&gz), CountryField::default());
    assert_eq!(zipped.source, [gz]);
    assert_eq!(zipped.countries, plain.countries);
    assert_eq!(zipped.built_at, plain.built_at);
}

#[test]
fn databases_without_a_country_field_are_rejected() {
    for name in [
        "MaxMind-DB-test-ipv4-24.mmdb",
        "MaxMind-DB-test-mixed-24.mmdb",
        "MaxMind-DB-test-decoder.mmdb",
        "MaxMind-DB-no-ipv4-search-tree.mmdb",
        "libmaxminddb-corrupt-search-tree.mmdb",
    ] {
        let path = test_db(name);
        let err = read(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(&err, ImportError::UnknownSchema { path: p, .. } if *p == path),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Corrupt and truncated input
// ---------------------------------------------------------------------------------------

/// The error and its whole source chain, as `anyhow`'s `{:#}` would print it.
fn chain(err: &ImportError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn broken_databases_are_errors_naming_the_file() {
    for (name, detail) in [
        ("MaxMind-DB-test-broken-pointers-24.mmdb", "pointer"),
        ("MaxMind-DB-test-broken-search-tree-24.mmdb", "search tree"),
        ("GeoIP2-City-Test-Invalid-Node-Count.mmdb", "search tree"),
        (
            "maxminddb-golang-invalid-bytes-length.mmdb",
            "end of buffer",
        ),
    ] {
        let path = test_db(name);
        let err = read(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(&err, ImportError::Mmdb { path: p, .. } if *p == path),
            "{name}: {err:?}"
        );
        let text = chain(&err);
        assert!(
            text.contains(name) && text.contains(detail),
            "{name}: {text}"
        );
    }
}

#[test]
fn truncated_databases_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let real = fs::read(full("GeoLite2-Country-2019-12-24.mmdb")).unwrap();
    let small = fs::read(test_db("GeoIP2-Country-Test.mmdb")).unwrap();
    let marker = |b: &[u8]| memchr::memmem::rfind(b, b"\xab\xcd\xefMaxMind.com").unwrap();
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        // Cut anywhere before the metadata: no marker left.
        ("half.mmdb", real[..real.len() / 2].to_vec()),
        ("head.mmdb", small[..1000].to_vec()),
    ];
    // Keep the metadata but drop part of the data section, or of the search tree.
    for (name, db, cut) in [
        (
            "data-cut.mmdb",
            &small,
            small.len() - 3000..small.len() - 2000,
        ),
        ("tree-cut.mmdb", &real, 100_000..2_000_000),
        (
            "tail-cut.mmdb",
            &real,
            // The data section is the last 91,212 bytes before the marker.
            marker(&real) - 40_000..marker(&real),
        ),
    ] {
        let mut bytes = db[..cut.start].to_vec();
        bytes.extend_from_slice(&db[cut.end..]);
        cases.push((name, bytes));
    }
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        let err = read(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        let text = chain(&err);
        assert!(text.contains(name), "{name}: {text}");
        assert!(
            matches!(
                &err,
                ImportError::Mmdb { .. } | ImportError::UnknownFormat { .. }
            ),
            "{name}: {err:?}"
        );
        eprintln!("{name}: {text}");
    }
}

#[test]
fn no_input_is_an_error() {
    assert!(matches!(
        read(&[], &ImportOptions::default()),
        Err(ImportError::NoInput)
    ));
}

#[test]
fn progress_templates_parse_and_progress_is_quiet_off_a_terminal() {
    for template in [BYTES_TEMPLATE, COUNT_TEMPLATE] {
        assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
    }
    // The test harness's stderr is not a terminal: asking for progress changes nothing.
    let path = test_db("GeoIP2-Country-Test.mmdb");
    let quiet = read(std::slice::from_ref(&path), &ImportOptions::default()).unwrap();
    let asked = ImportOptions {
        progress: true,
        ..ImportOptions::default()
    };
    assert!(progress_bar(&asked, Some(10), "bytes").is_hidden() || std::io::stderr().is_terminal());
    assert_eq!(read(&[path], &asked).unwrap(), quiet);
}

/// The file names the format detection is shown, one per reader.
const FUZZ_NAMES: [&str; 5] = [
    "catalog.mmdb",
    "GeoLite2-Country-Blocks-IPv4.csv",
    "ranges.csv",
    "ranges.csv.gz",
    "catalog",
];

/// Writes `body` as `name` in a fresh directory and reads it: a catalog or an error.
fn read_bytes(name: &str, body: &[u8]) -> Result<Catalog, ImportError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    fs::write(&path, body).expect("write");
    read(&[path], &ImportOptions::default())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]

    /// Any bytes under any of the readers' names, and the MaxMind test database with bytes
    /// overwritten anywhere (the maxminddb crate's own checks, then ours): a catalog or an
    /// error, never a panic. The cheap part of the `import` fuzz target, on every change.
    #[test]
    fn corrupt_files_are_errors_not_panics(
        name in 0usize..FUZZ_NAMES.len(),
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        csv in "([0-9a-f:.,\"/ -]{0,24}\n){0,12}",
        flips in proptest::collection::vec((0usize..18_012, proptest::prelude::any::<u8>()), 1..16),
    ) {
        let _ = read_bytes(FUZZ_NAMES[name], &body);
        let _ = read_bytes(FUZZ_NAMES[name], csv.as_bytes());
        let mut mmdb = fs::read(test_db("GeoLite2-Country-Test.mmdb")).expect("test mmdb");
        for (at, byte) in flips {
            let at = at % mmdb.len();
            mmdb[at] = byte;
        }
        if let Ok(catalog) = read_bytes("catalog.mmdb", &mmdb) {
            // What a damaged file still gives is a well-formed catalog: sorted, merged ranges.
            for ranges in catalog.countries.values() {
                proptest::prop_assert!(ranges.ranges.windows(2).all(|w| w[0].end_addr() < w[1].start_addr()));
            }
        }
    }
}
