//! GeoLite2 / GeoIP2 Country CSV reader: `*-Locations-en.csv` maps geoname ids to ISO codes and
//! English names; `*-Blocks-IPv4.csv` / `*-Blocks-IPv6.csv` map networks to geoname ids.
//! Columns are found by their header names, so extra or reordered columns are fine.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;

use super::collect::{Code, Collector};
use super::lines::{shown, BadRows, CsvLines, Fields};
use super::{CountryField, ImportError};
use crate::ranges::IpRange;

/// Reads the locations, then every blocks file; any bad row fails the whole import.
pub(super) fn read(
    locations: &Path,
    blocks: &[PathBuf],
    field: CountryField,
    pb: &ProgressBar,
) -> Result<Collector, ImportError> {
    let mut collector = Collector::new();
    let places = read_locations(locations, &mut collector)?;
    for path in blocks {
        read_blocks(path, locations, &places, field, pb, &mut collector)?;
    }
    Ok(collector)
}

/// `GeoLite2-Country` from `GeoLite2-Country-Blocks-IPv4.csv`, when the name has that shape.
pub(super) fn database_type(blocks: &[PathBuf]) -> Option<String> {
    let name = blocks.first()?.file_name()?.to_str()?;
    let (prefix, _) = name.split_once("-Blocks-")?;
    (!prefix.is_empty()).then(|| prefix.to_owned())
}

/// geoname id → the country code there, if the place is a country (continents have none).
type Places = HashMap<u32, Option<Code>>;

fn read_locations(path: &Path, collector: &mut Collector) -> Result<Places, ImportError> {
    let mut lines = CsvLines::open(path, &ProgressBar::hidden())?;
    let mut bad = BadRows::default();
    let mut places = Places::new();
    let mut columns: Option<[usize; 3]> = None;
    while let Some((line, fields)) = lines.next_line()? {
        let fields = match fields {
            Ok(fields) => fields,
            Err(reason) => {
                bad.push(line, reason);
                continue;
            }
        };
        let names = ["geoname_id", "country_iso_code", "country_name"];
        let Some((fields, [id, iso, name])) = data_row(fields, &mut columns, names, path)? else {
            continue;
        };
        let Some(geoname) = parse_id(fields.get(id)) else {
            bad.push(line, format!("bad geoname_id {}", shown(fields.get(id))));
            continue;
        };
        let code = match fields.get(iso) {
            b"" => None,
            text => match Code::parse(text) {
                Some(code) => Some(code),
                None => {
                    bad.push(
                        line,
                        format!("bad country_iso_code {}: expected two letters", shown(text)),
                    );
                    continue;
                }
            },
        };
        if let (Some(code), Ok(name)) = (code, std::str::from_utf8(fields.get(name))) {
            collector.name(code, name);
        }
        places.insert(geoname, code);
    }
    if columns.is_none() {
        return Err(no_header(path));
    }
    bad.check(path)?;
    Ok(places)
}

fn read_blocks(
    path: &Path,
    locations: &Path,
    places: &Places,
    choice: CountryField,
    pb: &ProgressBar,
    collector: &mut Collector,
) -> Result<(), ImportError> {
    let mut lines = CsvLines::open(path, pb)?;
    let mut bad = BadRows::default();
    let mut columns: Option<[usize; 3]> = None;
    while let Some((line, fields)) = lines.next_line()? {
        let fields = match fields {
            Ok(fields) => fields,
            Err(reason) => {
                collector.networks += u64::from(columns.is_some());
                bad.push(line, reason);
                continue;
            }
        };
        let names = ["network", "geoname_id", "registered_country_geoname_id"];
        let Some((fields, [net, country, registered])) =
            data_row(fields, &mut columns, names, path)?
        else {
            continue;
        };
        collector.networks += 1;
        let range = match parse_network(fields.get(net)) {
            Ok(range) => range,
            Err(reason) => {
                bad.push(line, reason);
                continue;
            }
        };
        let lookup = |column: usize, what: &str| -> Result<Option<Code>, String> {
            match fields.get(column) {
                b"" => Ok(None),
                text => {
                    let id = parse_id(text).ok_or_else(|| format!("bad {what} {}", shown(text)))?;
                    places
                        .get(&id)
                        .copied()
                        .ok_or_else(|| format!("{what} {id} is not in {}", locations.display()))
                }
            }
        };
        let country = lookup(country, "geoname_id");
        let registered = lookup(registered, "registered_country_geoname_id");
        let (country, registered) = match (country, registered) {
            (Ok(c), Ok(r)) => (c, r),
            (Err(reason), _) | (_, Err(reason)) => {
                bad.push(line, reason);
                continue;
            }
        };
        let code = match choice {
            CountryField::CountryThenRegistered => country.or(registered),
            CountryField::Country => country,
            CountryField::Registered => registered,
        };
        match code {
            Some(code) => collector.add(code, range),
            None => collector.skipped += 1,
        }
    }
    if columns.is_none() {
        return Err(no_header(path));
    }
    bad.check(path)
}

fn parse_id(text: &[u8]) -> Option<u32> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// A CIDR (IPv4-mapped IPv6 networks become IPv4).
fn parse_network(text: &[u8]) -> Result<IpRange, String> {
    let bad = || format!("bad network {}", shown(text));
    let text = std::str::from_utf8(text).map_err(|_| bad())?;
    if !text.contains('/') {
        return Err(bad());
    }
    text.parse::<IpRange>()
        .map_err(|e| format!("bad network: {e}"))
}

/// A data row and the indexes of its named columns; `None` for the first line, the header,
/// in which `columns` are then found by their `names`.
fn data_row<'a, const N: usize>(
    fields: Fields<'a>,
    columns: &mut Option<[usize; N]>,
    names: [&str; N],
    path: &Path,
) -> Result<Option<(Fields<'a>, [usize; N])>, ImportError> {
    match *columns {
        Some(found) => Ok(Some((fields, found))),
        None => {
            *columns = Some(header_columns(&fields, names, path)?);
            Ok(None)
        }
    }
}

/// The indexes of the named columns in the header row.
fn header_columns<const N: usize>(
    header: &Fields<'_>,
    names: [&str; N],
    path: &Path,
) -> Result<[usize; N], ImportError> {
    let mut out = [0; N];
    for (slot, name) in out.iter_mut().zip(names) {
        *slot = header
            .iter()
            .position(|h| h == name.as_bytes())
            .ok_or_else(|| ImportError::UnknownFormat {
                path: path.to_owned(),
                reason: format!("the header line has no {name:?} column"),
            })?;
    }
    Ok(out)
}

fn no_header(path: &Path) -> ImportError {
    ImportError::UnknownFormat {
        path: path.to_owned(),
        reason: "the file has no header line".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::import::{read as import, Format, ImportOptions};

    const LOCATIONS: &str = "geoname_id,locale_code,continent_code,continent_name,\
country_iso_code,country_name,is_in_european_union\n\
6255148,en,EU,Europe,,,0\n\
2921044,en,EU,Europe,DE,Germany,1\n\
6252001,en,NA,\"North America\",US,\"United States\",0\n\
3017382,en,EU,Europe,FR,France,1\n";

    const BLOCKS4: &str = "network,geoname_id,registered_country_geoname_id,\
represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider\n\
1.0.0.0/24,2921044,2921044,,0,0\n\
1.0.1.0/24,2921044,6252001,,0,0\n\
9.9.9.0/24,3017382,6252001,,0,0\n\
2.16.0.0/22,6255148,,,0,0\n\
23.128.130.0/23,,6252001,,0,0\n\
5.5.5.0/24,,,,1,0\n";

    const BLOCKS6: &str = "network,geoname_id,registered_country_geoname_id,\
represented_country_geoname_id,is_anonymous_proxy,is_satellite_provider\n\
2001:db8::/33,2921044,2921044,,0,0\n\
2001:db8:8000::/33,2921044,2921044,,0,0\n\
::ffff:7.7.7.0/120,3017382,3017382,,0,0\n";

    fn setup(blocks4: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("GeoLite2-Country-Locations-en.csv"), LOCATIONS).unwrap();
        fs::write(d.join("GeoLite2-Country-Blocks-IPv4.csv"), blocks4).unwrap();
        fs::write(d.join("GeoLite2-Country-Blocks-IPv6.csv"), BLOCKS6).unwrap();
        let path = d.to_owned();
        (dir, path)
    }

    fn ranges(cat: &crate::import::Catalog, cc: &str) -> Vec<String> {
        cat.countries[cc]
            .ranges
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn reads_a_directory_with_each_country_field() {
        let (_dir, path) = setup(BLOCKS4);
        let opts = |country_field| ImportOptions {
            country_field,
            progress: false,
        };
        let cat = import(std::slice::from_ref(&path), &opts(CountryField::default())).unwrap();
        assert_eq!(cat.format, Format::GeoLite2Csv);
        assert_eq!(cat.database_type.as_deref(), Some("GeoLite2-Country"));
        assert_eq!(cat.networks, 9);
        assert_eq!(cat.countries["DE"].name.as_deref(), Some("Germany"));
        assert_eq!(cat.countries["US"].name.as_deref(), Some("United States"));
        assert_eq!(ranges(&cat, "DE"), ["1.0.0.0/23", "2001:db8::/32"]);
        assert_eq!(ranges(&cat, "FR"), ["7.7.7.0/24", "9.9.9.0/24"]);
        assert_eq!(ranges(&cat, "US"), ["23.128.130.0/23"]);

        let cat = import(std::slice::from_ref(&path), &opts(CountryField::Country)).unwrap();
        assert_eq!(cat.countries.keys().collect::<Vec<_>>(), ["DE", "FR"]);
        assert_eq!(ranges(&cat, "FR"), ["7.7.7.0/24", "9.9.9.0/24"]);

        let cat = import(&[path], &opts(CountryField::Registered)).unwrap();
        assert_eq!(ranges(&cat, "DE"), ["1.0.0.0/24", "2001:db8::/32"]);
        assert_eq!(
            ranges(&cat, "US"),
            ["1.0.1.0/24", "9.9.9.0/24", "23.128.130.0/23"]
        );
        assert_eq!(ranges(&cat, "FR"), ["7.7.7.0/24"]);
    }

    #[test]
    fn gzipped_files_in_a_directory() {
        use std::io::Write;
        let (_dir, path) = setup(BLOCKS4);
        let plain = import(std::slice::from_ref(&path), &ImportOptions::default()).unwrap();
        let blocks = path.join("GeoLite2-Country-Blocks-IPv4.csv");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&fs::read(&blocks).unwrap()).unwrap();
        fs::write(
            path.join("GeoLite2-Country-Blocks-IPv4.csv.gz"),
            enc.finish().unwrap(),
        )
        .unwrap();
        fs::remove_file(&blocks).unwrap();
        let zipped = import(&[path], &ImportOptions::default()).unwrap();
        assert_eq!(zipped.countries, plain.countries);
        assert_eq!(zipped.networks, 9);
    }

    #[test]
    fn bad_block_rows_are_listed() {
        let bad = format!(
            "{BLOCKS4}1.2.3.4/24,2921044,,,0,0\n1.2.4.0/24,999,,,0,0\n\
             1.2.5.0,2921044,,,0,0\n1.2.6.0/24,x1,,,0,0\n1.2.7.0/24,,12,,0,0\n"
        );
        let (_dir, path) = setup(&bad);
        let err = import(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        let text = err.to_string();
        match err {
            ImportError::BadRows {
                path: p,
                total,
                rows,
            } => {
                assert!(p.ends_with("GeoLite2-Country-Blocks-IPv4.csv"), "{p:?}");
                assert_eq!(total, 5);
                let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
                assert_eq!(lines, [8, 9, 10, 11, 12]);
            }
            other => panic!("{other:?}"),
        }
        for needle in [
            "line 8: bad network: 1.2.3.4/24 has host bits set",
            "line 9: geoname_id 999 is not in",
            "line 10: bad network \"1.2.5.0\"",
            "line 11: bad geoname_id \"x1\"",
            "line 12: registered_country_geoname_id 12 is not in",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn bad_locations_and_missing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let locs = d.join("X-Locations-en.csv");
        let blocks = d.join("X-Blocks-IPv4.csv");
        fs::write(&blocks, BLOCKS4).unwrap();
        fs::write(
            &locs,
            format!("{LOCATIONS}12a,en,EU,Europe,DE,Germany,1\n1,en,EU,Europe,DEU,Germany,1\n"),
        )
        .unwrap();
        let err = import(&[locs.clone(), blocks.clone()], &ImportOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "2 bad rows: line 6: bad geoname_id \"12a\"; line 7: bad country_iso_code \"DEU\""
            ),
            "{text}"
        );

        fs::write(&locs, "geoname_id,locale_code,continent_code\n1,en,EU\n").unwrap();
        let err = import(&[locs, blocks], &ImportOptions::default()).unwrap_err();
        assert!(
            err.to_string().contains("no \"country_iso_code\" column"),
            "{err}"
        );
    }

    #[test]
    fn no_country_at_all_is_empty() {
        let (_dir, path) =
            setup("network,geoname_id,registered_country_geoname_id\n2.16.0.0/22,6255148,\n");
        fs::remove_file(path.join("GeoLite2-Country-Blocks-IPv6.csv")).unwrap();
        let err = import(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        assert!(
            matches!(&err, ImportError::Empty { paths } if *paths == [path.clone()]),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("no country ranges found in "),
            "{err}"
        );
    }
}
