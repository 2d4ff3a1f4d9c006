//! Range CSV reader: rows `start,end,country_code` with inclusive text IPs (the ip-location-db
//! and DB-IP Lite CSV form), plain or gzipped, one or more files into one collector.

use std::net::IpAddr;
use std::path::Path;

use indicatif::ProgressBar;

use super::collect::{Code, Collector};
use super::detect::RangeFile;
use super::lines::{shown, BadRows, CsvLines, Fields};
use super::ImportError;
use crate::ranges::IpRange;

/// Reads every file; any bad row fails the whole import.
pub(super) fn read(files: &[RangeFile], pb: &ProgressBar) -> Result<Collector, ImportError> {
    let mut collector = Collector::new();
    for file in files {
        read_file(&file.path, file.header, pb, &mut collector)?;
    }
    Ok(collector)
}

fn read_file(
    path: &Path,
    header: bool,
    pb: &ProgressBar,
    collector: &mut Collector,
) -> Result<(), ImportError> {
    let mut lines = CsvLines::open(path, pb)?;
    let mut bad = BadRows::default();
    let mut first = true;
    while let Some((line, fields)) = lines.next_line()? {
        if std::mem::take(&mut first) && header {
            continue;
        }
        collector.networks += 1;
        match fields.and_then(|f| parse_row(&f)) {
            Ok((range, code)) => collector.add(code, range),
            Err(reason) => bad.push(line, reason),
        }
    }
    bad.check(path)
}

/// One `start,end,country_code` row.
fn parse_row(fields: &Fields<'_>) -> Result<(IpRange, Code), String> {
    if fields.len() != 3 {
        return Err(format!(
            "expected 3 fields (start,end,country_code), found {}",
            fields.len()
        ));
    }
    let (start, end, code) = (fields.get(0), fields.get(1), fields.get(2));
    let start = parse_ip(start).ok_or_else(|| format!("bad start address {}", shown(start)))?;
    let end = parse_ip(end).ok_or_else(|| format!("bad end address {}", shown(end)))?;
    let range = range_of(start, end)?;
    let code = Code::parse(code)
        .ok_or_else(|| format!("bad country code {}: expected two letters", shown(code)))?;
    Ok((range, code))
}

fn parse_ip(field: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

/// Both ends IPv4 (or both IPv4-mapped IPv6) make an IPv4 range; both IPv6 otherwise make an
/// IPv6 range; one of each is an error. Same rules as `IpRange`'s `A-B` form.
fn range_of(start: IpAddr, end: IpAddr) -> Result<IpRange, String> {
    let (start, end) = match (start, end) {
        (IpAddr::V6(a), IpAddr::V6(b)) => match (a.to_ipv4_mapped(), b.to_ipv4_mapped()) {
            (Some(a), Some(b)) => (IpAddr::V4(a), IpAddr::V4(b)),
            _ => (IpAddr::V6(a), IpAddr::V6(b)),
        },
        other => other,
    };
    let range = match (start, end) {
        (IpAddr::V4(a), IpAddr::V4(b)) => IpRange::v4(u32::from(a), u32::from(b)),
        (IpAddr::V6(a), IpAddr::V6(b)) => IpRange::v6(u128::from(a), u128::from(b)),
        _ => return Err(format!("{start} and {end} are of different families")),
    };
    range.map_err(|_| format!("start {start} is after end {end}"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;
    use crate::import::lines::split;
    use crate::import::{read as import, Format, ImportOptions, MAX_BAD_ROWS};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    fn v4(a: &str, b: &str) -> IpRange {
        IpRange::from_addrs(a.parse().unwrap(), b.parse().unwrap()).unwrap()
    }

    #[test]
    fn reads_and_merges_rows_of_several_files() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "v4.csv",
            "1.0.0.0,1.0.0.255,au\n1.0.1.0,1.0.3.255,CN\n1.0.4.0,1.0.7.255,AU\n\
             1.0.8.0,1.0.8.255,AU\n::ffff:2.0.0.0,::ffff:2.0.0.9,FR\n",
        );
        let b = write(
            dir.path(),
            "v6.csv",
            "2000::,2000::ffff,CH\r\n 2001:: , 2001::1 ,\"AU\"\r\n::,::ffff:1.2.3.4,AU\r\n",
        );
        let cat = import(&[a.clone(), b.clone()], &ImportOptions::default()).unwrap();
        assert_eq!(cat.format, Format::RangeCsv);
        assert_eq!(cat.source, [a, b]);
        assert_eq!(cat.networks, 8);
        assert_eq!(cat.built_at, None);
        assert_eq!(
            cat.countries.keys().collect::<Vec<_>>(),
            ["AU", "CH", "CN", "FR"]
        );
        assert_eq!(
            cat.countries["AU"].ranges,
            [
                v4("1.0.0.0", "1.0.0.255"),
                v4("1.0.4.0", "1.0.8.255"),
                IpRange::V6 {
                    start: 0,
                    end: 0xffff_0102_0304
                },
                "2001::/127".parse().unwrap(),
            ]
        );
        assert_eq!(cat.countries["FR"].ranges, [v4("2.0.0.0", "2.0.0.9")]);
        assert_eq!(cat.countries["CH"].name, None);
    }

    #[test]
    fn a_header_line_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "h.csv",
            "ip_range_start,ip_range_end,country_code\n1.0.0.0,1.0.0.255,AU\n",
        );
        let cat = import(&[a], &ImportOptions::default()).unwrap();
        assert_eq!(cat.networks, 1);
        assert_eq!(cat.countries["AU"].ranges, [v4("1.0.0.0", "1.0.0.255")]);
    }

    #[test]
    fn bad_rows_are_listed_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "bad.csv",
            "1.0.0.0,1.0.0.255,AU\n\
             1.0.1.0,1.0.0.255,AU\n\
             1.0.2.0,1.0.2.255\n\
             1.0.3.x,1.0.3.255,AU\n\
             \n\
             1.0.4.0,1.0.4.255,AUS\n\
             1.0.5.0,::1,AU\n\
             1.0.6.0,1.0.6.255,A1\n\
             1.0.7.0,1.0.7.255,US,extra\n\
             1.0.8.0,1.0.8.255,US\n",
        );
        let err = import(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        let text = err.to_string();
        let ImportError::BadRows {
            path: p,
            total,
            rows,
        } = err
        else {
            panic!("{err:?}");
        };
        assert_eq!(p, path);
        assert_eq!(total, 7);
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, [2, 3, 4, 6, 7, 8, 9]);
        assert!(text.starts_with(&format!("{}: 7 bad rows: line 2: start 1.0.1.0 is after end 1.0.0.255; line 3: expected 3 fields", path.display())), "{text}");
        for needle in [
            "line 4: bad start address \"1.0.3.x\"",
            "line 6: bad country code \"AUS\"",
            "line 7: 1.0.5.0 and ::1 are of different families",
            "line 8: bad country code \"A1\"",
            "line 9: expected 3 fields (start,end,country_code), found 4",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn many_bad_rows_are_capped_but_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("1.0.0.0,1.0.0.255,AU\n");
        for i in 0..25 {
            text.push_str(&format!("1.0.{i}.0,1.0.{i}.255,??\n"));
        }
        let path = write(dir.path(), "bad.csv", &text);
        match import(&[path], &ImportOptions::default()).unwrap_err() {
            ImportError::BadRows { total, rows, .. } => {
                assert_eq!(total, 25);
                assert_eq!(rows.len(), MAX_BAD_ROWS);
                assert_eq!(rows[0].line, 2);
                assert_eq!(rows[9].line, 11);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gzipped_truncated_input_is_a_named_error() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        for i in 0..20_000u32 {
            let ip = std::net::Ipv4Addr::from(i << 8);
            writeln!(enc, "{ip},{ip},DE").unwrap();
        }
        let gz = enc.finish().unwrap();
        let path = dir.path().join("cut.csv.gz");
        fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let err = import(std::slice::from_ref(&path), &ImportOptions::default()).unwrap_err();
        let ImportError::Read { path: p, line, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*p, path);
        assert!(*line > 1000 && *line < 20_000, "{line}");
        assert!(
            err.to_string()
                .contains(&format!("cut.csv.gz: read error at line {line}")),
            "{err}"
        );
    }

    #[test]
    fn single_rows() {
        let row = |text: &str| split(text.as_bytes()).and_then(|f| parse_row(&f));
        assert_eq!(
            row("1.2.3.4,1.2.3.4,de"),
            Ok((v4("1.2.3.4", "1.2.3.4"), Code::parse(b"DE").unwrap()))
        );
        assert_eq!(
            row("::ffff:1.2.3.4,::ffff:1.2.3.9,DE").map(|r| r.0),
            Ok(v4("1.2.3.4", "1.2.3.9"))
        );
        assert_eq!(
            row("::1,::ffff:1.2.3.9,DE").map(|r| r.0),
            Ok(IpRange::V6 {
                start: 1,
                end: 0xffff_0102_0309
            })
        );
        assert_eq!(
            row("0.0.0.0,255.255.255.255,ZZ").map(|r| r.0),
            Ok(IpRange::V4 {
                start: 0,
                end: u32::MAX
            })
        );
        assert_eq!(
            row("1.2.3.4,1.2.3.4,\"D\""),
            Err("bad country code \"D\": expected two letters".into())
        );
        assert_eq!(
            row("1.2.3.4,1.2.3.4"),
            Err("expected 3 fields (start,end,country_code), found 2".into())
        );
        assert_eq!(
            row("1.2.3.4,\"1.2.3.4,DE"),
            Err("unterminated quoted field".into())
        );
    }
}
