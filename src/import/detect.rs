//! Format detection: turns the paths given to [`super::read`] into one reading [`Plan`], by
//! looking at the bytes (gzip magic, the MaxMind DB metadata marker, CSV header lines), not at
//! file names.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use memchr::{memchr, memmem};

use super::gzip::{decoded, starts_with_gzip};
use super::lines::split;
use super::{io_error, ImportError};

/// The MaxMind DB metadata marker.
const MMDB_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
/// The metadata section (and its marker) lies within this many bytes of the end.
const MMDB_METADATA_MAX: u64 = 128 * 1024;
/// Bytes read from the start of a text file to recognize it.
const SNIFF_LEN: u64 = 64 * 1024;
/// Upper bound for a gzipped MaxMind DB decompressed into memory.
const MAX_GZ_MMDB: u64 = 4 << 30;

/// What to read, decided from all the paths together.
#[derive(Debug)]
pub(super) enum Plan {
    /// One MaxMind DB, already in memory (decompressed if it was gzipped).
    Mmdb { path: PathBuf, bytes: Vec<u8> },
    /// GeoLite2 CSV: one locations file and one or more blocks files.
    GeoLite {
        locations: PathBuf,
        blocks: Vec<PathBuf>,
    },
    /// One or more `start,end,country_code` files.
    Ranges(Vec<RangeFile>),
}

/// A range CSV file and whether its first line is a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RangeFile {
    pub(super) path: PathBuf,
    pub(super) header: bool,
}

/// Recognizes every path (expanding directories to their GeoLite2 CSV files) and checks that
/// together they make one catalog.
pub(super) fn plan(paths: &[PathBuf]) -> Result<Plan, ImportError> {
    let mut mmdbs = Vec::new();
    let mut locations = Vec::new();
    let mut blocks = Vec::new();
    let mut ranges = Vec::new();
    for path in expand(paths)? {
        match sniff(&path)? {
            Kind::Mmdb(bytes) => mmdbs.push((path, bytes)),
            Kind::Locations => locations.push(path),
            Kind::Blocks => blocks.push(path),
            Kind::Ranges { header } => ranges.push(RangeFile { path, header }),
        }
    }
    let kinds = [
        !mmdbs.is_empty(),
        !locations.is_empty() || !blocks.is_empty(),
        !ranges.is_empty(),
    ];
    if kinds.iter().filter(|&&k| k).count() > 1 {
        let mut found = Vec::new();
        if let Some((path, _)) = mmdbs.first() {
            found.push(format!("{} is a MaxMind DB", path.display()));
        }
        if let Some(path) = locations.first().or(blocks.first()) {
            found.push(format!("{} is GeoLite2 CSV", path.display()));
        }
        if let Some(file) = ranges.first() {
            found.push(format!("{} is a range CSV", file.path.display()));
        }
        return Err(ImportError::Inputs {
            reason: format!("mixed formats: {}", found.join(", ")),
        });
    }
    if !mmdbs.is_empty() {
        if mmdbs.len() > 1 {
            return Err(ImportError::Inputs {
                reason: format!(
                    "{} MaxMind DB files given; import one database at a time",
                    mmdbs.len()
                ),
            });
        }
        let (path, bytes) = mmdbs.remove(0);
        let bytes = match bytes {
            Some(bytes) => bytes,
            None => fs::read(&path).map_err(io_error(&path))?,
        };
        return Ok(Plan::Mmdb { path, bytes });
    }
    if !ranges.is_empty() {
        return Ok(Plan::Ranges(ranges));
    }
    match (locations.len(), blocks.is_empty()) {
        (1, false) => Ok(Plan::GeoLite {
            locations: locations.remove(0),
            blocks,
        }),
        (0, _) => Err(ImportError::Inputs {
            reason: "GeoLite2 CSV blocks need their *-Locations-en.csv file".into(),
        }),
        (_, true) => Err(ImportError::Inputs {
            reason: "GeoLite2 CSV locations without any *-Blocks-IPv4.csv or *-Blocks-IPv6.csv"
                .into(),
        }),
        (n, false) => Err(ImportError::Inputs {
            reason: format!("{n} GeoLite2 locations files given; give exactly one"),
        }),
    }
}

/// The total size of the files on disk (for the progress bar), when all are known.
pub(super) fn total_size<'a>(paths: impl Iterator<Item = &'a PathBuf>) -> Option<u64> {
    paths
        .map(|p| fs::metadata(p).ok().map(|m| m.len()))
        .sum::<Option<u64>>()
}

/// What one file is.
#[derive(Debug)]
enum Kind {
    /// A MaxMind DB; the bytes when they had to be decompressed already.
    Mmdb(Option<Vec<u8>>),
    Locations,
    Blocks,
    Ranges {
        header: bool,
    },
}

/// GeoLite2 CSV file name suffixes picked out of a directory.
const GEOLITE_SUFFIXES: [&str; 3] = ["-Blocks-IPv4.csv", "-Blocks-IPv6.csv", "-Locations-en.csv"];

/// Directories become their GeoLite2 CSV files (sorted); files stay as given.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for path in paths {
        let meta = fs::metadata(path).map_err(io_error(path))?;
        if !meta.is_dir() {
            out.push(path.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(path).map_err(io_error(path))? {
            let entry = entry.map_err(io_error(path))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let name = name.strip_suffix(".gz").unwrap_or(&name);
            if GEOLITE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                found.push(entry.path());
            }
        }
        if found.is_empty() {
            return Err(ImportError::UnknownFormat {
                path: path.clone(),
                reason: "directory holds no GeoLite2 CSV files (*-Blocks-IPv4.csv, \
                         *-Blocks-IPv6.csv, *-Locations-en.csv)"
                    .into(),
            });
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

/// Recognizes one file.
fn sniff(path: &Path) -> Result<Kind, ImportError> {
    let unknown = |reason: String| ImportError::UnknownFormat {
        path: path.to_owned(),
        reason,
    };
    let mut file = File::open(path).map_err(io_error(path))?;
    let gzipped = starts_with_gzip(&mut file).map_err(io_error(path))?;
    if !gzipped && has_mmdb_marker(&mut file).map_err(io_error(path))? {
        return Ok(Kind::Mmdb(None));
    }
    file.seek(SeekFrom::Start(0)).map_err(io_error(path))?;
    let mut head = Vec::new();
    let mut reader = decoded(file, gzipped).take(SNIFF_LEN);
    reader.read_to_end(&mut head).map_err(io_error(path))?;
    if head.is_empty() {
        return Err(unknown("the file is empty".into()));
    }
    if let Some(kind) = sniff_text(&head) {
        return Ok(kind);
    }
    if !is_text(&head) {
        if gzipped {
            // Maybe a gzipped MaxMind DB: decompress it all and look for the marker.
            let mut bytes = head;
            let mut rest = reader.into_inner().take(MAX_GZ_MMDB);
            rest.read_to_end(&mut bytes).map_err(io_error(path))?;
            let tail_start = bytes.len().saturating_sub(MMDB_METADATA_MAX as usize);
            if memmem::find(&bytes[tail_start..], MMDB_MARKER).is_some() {
                return Ok(Kind::Mmdb(Some(bytes)));
            }
        }
        return Err(unknown(
            "binary data without the MaxMind DB metadata marker (a truncated or corrupt .mmdb?)"
                .into(),
        ));
    }
    let first = first_line(&head).unwrap_or_default();
    let shown: String = first.chars().take(80).collect();
    Err(unknown(format!(
        "first line {shown:?} is neither a GeoLite2 CSV header nor a start,end,country_code row"
    )))
}

/// Recognizes a text file from its first lines.
fn sniff_text(head: &[u8]) -> Option<Kind> {
    if !is_text(head) {
        return None;
    }
    let text = String::from_utf8_lossy(head);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let first = lines.next()?;
    let fields = split_text(first);
    let names: Vec<&str> = fields.iter().map(String::as_str).collect();
    match names.as_slice() {
        ["network", "geoname_id", ..] => return Some(Kind::Blocks),
        ["geoname_id", "locale_code", ..] => return Some(Kind::Locations),
        _ => {}
    }
    if is_range_row(&fields) {
        return Some(Kind::Ranges { header: false });
    }
    // One header line above range rows, e.g. `ip_range_start,ip_range_end,country_code`.
    let second = split_text(lines.next()?);
    let first_is_ip = fields.iter().any(|f| f.parse::<IpAddr>().is_ok());
    if fields.len() == 3 && !first_is_ip && is_range_row(&second) {
        return Some(Kind::Ranges { header: true });
    }
    None
}

/// At least three fields, the first two IP addresses.
fn is_range_row(fields: &[String]) -> bool {
    fields.len() >= 3 && fields[0].parse::<IpAddr>().is_ok() && fields[1].parse::<IpAddr>().is_ok()
}

/// The fields of a line, as text (empty when a field is not UTF-8 or the line cannot be split).
fn split_text(line: &str) -> Vec<String> {
    split(line.as_bytes())
        .map(|f| {
            f.iter()
                .map(|x| std::str::from_utf8(x).unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The first line, when the head is UTF-8 up to it.
fn first_line(head: &[u8]) -> Option<String> {
    let end = memchr(b'\n', head).unwrap_or(head.len());
    std::str::from_utf8(&head[..end])
        .ok()
        .map(|l| l.trim_end_matches('\r').to_owned())
}

/// No NUL bytes, and valid UTF-8 except possibly a character cut at the end.
fn is_text(head: &[u8]) -> bool {
    if memchr(0, head).is_some() {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    }
}

/// Whether the metadata marker appears in the last 128 KiB.
fn has_mmdb_marker(file: &mut File) -> io::Result<bool> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(MMDB_METADATA_MAX)))?;
    let mut tail = Vec::new();
    file.take(MMDB_METADATA_MAX).read_to_end(&mut tail)?;
    Ok(memmem::find(&tail, MMDB_MARKER).is_some())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;
    use crate::import::data_dir;

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn kind(path: &Path) -> String {
        match sniff(path) {
            Ok(Kind::Mmdb(b)) => format!("mmdb(gz={})", b.is_some()),
            Ok(k) => format!("{k:?}"),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn sniffs_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mmdb = fs::read(data_dir().join("maxmind-test-data/GeoIP2-Country-Test.mmdb")).unwrap();
        assert_eq!(kind(&write(d, "db.csv", &mmdb)), "mmdb(gz=false)");
        assert_eq!(kind(&write(d, "db.mmdb.gz", &gzip(&mmdb))), "mmdb(gz=true)");
        let blocks = b"network,geoname_id,registered_country_geoname_id\n1.0.0.0/24,1,1\n";
        assert_eq!(kind(&write(d, "x.mmdb", blocks)), "Blocks");
        let locs = b"\xef\xbb\xbfgeoname_id,locale_code,continent_code\r\n1,en,EU\r\n";
        assert_eq!(kind(&write(d, "y", locs)), "Locations");
        let ranges = b"1.0.0.0,1.0.0.255,AU\n";
        assert_eq!(kind(&write(d, "r", ranges)), "Ranges { header: false }");
        assert_eq!(
            kind(&write(d, "r.gz", &gzip(ranges))),
            "Ranges { header: false }"
        );
        let v6 = b"2000::,2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff,CH\n";
        assert_eq!(kind(&write(d, "r6", v6)), "Ranges { header: false }");
        let headed = b"ip_range_start,ip_range_end,country_code\n1.0.0.0,1.0.0.255,AU\n";
        assert_eq!(kind(&write(d, "h", headed)), "Ranges { header: true }");
    }

    #[test]
    fn unknown_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, bytes, needle) in [
            ("empty.csv", &b""[..], "empty"),
            (
                "junk.csv",
                b"hello,world\nfoo,bar\n",
                "first line \"hello,world\"",
            ),
            ("bin.mmdb", b"\x00\x01\x02\x03binary", "metadata marker"),
            ("one.csv", b"1.0.0.0,1.0.0.255,AU", ""),
        ] {
            let path = write(d, name, bytes);
            let got = kind(&path);
            if needle.is_empty() {
                assert_eq!(got, "Ranges { header: false }");
                continue;
            }
            assert!(got.starts_with("error: "), "{name}: {got}");
            assert!(got.contains(name), "{name}: {got}");
            assert!(got.contains(needle), "{name}: {got}");
        }
        let missing = d.join("missing.mmdb");
        let err = plan(std::slice::from_ref(&missing)).unwrap_err();
        assert!(
            matches!(&err, ImportError::Io { path, .. } if *path == missing),
            "{err:?}"
        );
    }

    #[test]
    fn plans() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let blocks4 = write(
            d,
            "GeoLite2-Country-Blocks-IPv4.csv",
            b"network,geoname_id,registered_country_geoname_id\n",
        );
        let locs = write(
            d,
            "GeoLite2-Country-Locations-en.csv",
            b"geoname_id,locale_code,continent_code\n",
        );
        write(
            d,
            "GeoLite2-Country-Locations-de.csv",
            b"geoname_id,locale_code\n",
        );
        write(d, "README.txt", b"hello\n");
        match plan(&[d.to_owned()]).unwrap() {
            Plan::GeoLite { locations, blocks } => {
                assert_eq!(locations, locs);
                assert_eq!(blocks, std::slice::from_ref(&blocks4));
            }
            other => panic!("{other:?}"),
        }
        let r1 = write(d, "a.csv", b"1.0.0.0,1.0.0.255,AU\n");
        let r2 = write(d, "b.csv", b"::1,::2,AU\n");
        match plan(&[r1.clone(), r2.clone()]).unwrap() {
            Plan::Ranges(files) => assert_eq!(files.len(), 2),
            other => panic!("{other:?}"),
        }
        let err = plan(&[r1.clone(), blocks4.clone()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("mixed formats"), "{err}");
        let err = plan(std::slice::from_ref(&blocks4))
            .unwrap_err()
            .to_string();
        assert!(err.contains("Locations"), "{err}");
        let err = plan(std::slice::from_ref(&locs)).unwrap_err().to_string();
        assert!(err.contains("without any"), "{err}");
        let mmdb = data_dir().join("maxmind-test-data/GeoIP2-Country-Test.mmdb");
        let err = plan(&[mmdb.clone(), mmdb.clone()]).unwrap_err().to_string();
        assert!(err.contains("one database at a time"), "{err}");
        let err = plan(&[mmdb, r1]).unwrap_err().to_string();
        assert!(err.contains("mixed formats"), "{err}");
        let empty_dir = tempfile::tempdir().unwrap();
        let err = plan(&[empty_dir.path().to_owned()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("no GeoLite2 CSV files"), "{err}");
    }
}
