//! Country catalogs: reading GeoLite-style country databases into per-country merged ranges.
//!
//! This is the contract between the readers (`import::*`, which never touch the store) and the
//! store's catalog/refresh code. [`read`] detects the format of the given file(s), reads every
//! network, groups them by two-letter country code, and merges adjacent and overlapping ranges
//! of each country, so a country's thousands of networks become as few rows as possible.
//!
//! # Formats and how they are recognized
//!
//! Detection looks at the bytes, never at file names (except to pick the GeoLite2 CSV files
//! out of a directory):
//!
//! - **MaxMind DB** (`.mmdb`, optionally gzipped): the file carries the metadata marker
//!   `\xab\xcd\xefMaxMind.com` in its last 128 KiB. The record schema is then recognized from
//!   the records themselves: the first record with a `country_code` key makes it
//!   [`Format::MmdbCountryCode`] (ip-location-db, DB-IP Lite), the first with `country` or
//!   `registered_country` makes it [`Format::MmdbGeoIp2`] (GeoIP2/GeoLite2 Country or City);
//!   a record with both lets the `database_type` decide (`GeoIP*`, `GeoLite*`, `DBIP-*` mean
//!   GeoIP2). [`ImportOptions::country_field`] applies to the GeoIP2 schema and GeoLite2 CSV.
//! - **GeoLite2 CSV**: a directory (its `*-Blocks-IPv4.csv`, `*-Blocks-IPv6.csv` and
//!   `*-Locations-en.csv`, optionally `.gz`) or those files, recognized by their header lines
//!   `network,geoname_id,...` and `geoname_id,locale_code,...`.
//! - **Range CSV** (optionally gzipped, one or more files): rows `start,end,country_code` with
//!   inclusive text IPs, no header (a single header line is tolerated).
//!
//! All files given to one [`read`] call must be of one format and make one catalog (for
//! example an IPv4 and an IPv6 range CSV, or GeoLite2 blocks plus their locations).
//!
//! # Rules shared by every format
//!
//! - Country codes are upper-cased; a code that is not two ASCII letters is a bad row in a
//!   CSV (an error), and a skipped network in a MaxMind DB (logged with the count of other
//!   networks without a country).
//! - A CSV file with bad rows fails as a whole: [`ImportError::BadRows`] lists the first
//!   [`MAX_BAD_ROWS`] 1-based line numbers with reasons, and the total count.
//! - A corrupt or truncated database fails as a whole; nothing is ever returned half-read.
//! - A result without a single country is [`ImportError::Empty`].
//! - IPv4 networks stored in an IPv6 tree (`::a.b.c.d/(96+n)`) and IPv4-mapped CSV ranges
//!   (`::ffff:a.b.c.d`, both ends) become IPv4 ranges. MaxMind DB alias subtrees
//!   (`::ffff:0:0/96`, `2002::/16` in GeoLite2) are not read, so IPv4 space is never duplicated
//!   as IPv6; a real record at `2002::/16` (as in DB-IP) is read as IPv6. An IPv6 record that
//!   covers all of `::/96` (a database without an IPv4 subtree) also covers all of IPv4, as
//!   it does for the database's own IPv4 lookups.
//! - [`Catalog::networks`] counts every network (or data row) read, including those skipped
//!   for lack of a country; the number skipped is logged (`tracing`, info level).

use std::collections::BTreeMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::ranges::IpRange;

mod collect;
mod detect;
mod geolite_csv;
mod gzip;
mod lines;
mod merge;
mod mmdb;
mod range_csv;
#[cfg(test)]
mod tests;

/// The formats ipcountry can import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum Format {
    /// MaxMind DB with the GeoIP2/GeoLite2 Country schema (`country.iso_code`).
    MmdbGeoIp2,
    /// MaxMind DB with the ip-location-db schema (`country_code`).
    MmdbCountryCode,
    /// GeoLite2 CSV (`*-Blocks-IPv4.csv`, `*-Blocks-IPv6.csv`, `*-Locations-en.csv`).
    GeoLite2Csv,
    /// Plain range CSV: `start,end,country_code` (optionally gzipped).
    RangeCsv,
}

/// Which field gives a network's country in the GeoIP2 schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CountryField {
    /// `country.iso_code`, falling back to `registered_country.iso_code` (the default).
    #[default]
    CountryThenRegistered,
    /// `country.iso_code` only (networks without it are skipped).
    Country,
    /// `registered_country.iso_code` only.
    Registered,
}

/// Options for [`read`].
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Which country field to use for the GeoIP2 schema.
    pub country_field: CountryField,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

/// One country's ranges, merged and sorted (IPv4 first, then IPv6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CountryRanges {
    /// English name, when the source has one.
    pub name: Option<String>,
    /// Disjoint, non-adjacent, sorted ranges.
    pub ranges: Vec<IpRange>,
}

/// A whole catalog read from one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// The detected format.
    pub format: Format,
    /// The file(s) it came from, as given.
    pub source: Vec<PathBuf>,
    /// The database's build time (Unix seconds), when the source records one.
    pub built_at: Option<i64>,
    /// The database type from the metadata (`GeoLite2-Country`), when known.
    pub database_type: Option<String>,
    /// Ranges by upper-case ISO 3166-1 alpha-2 code.
    pub countries: BTreeMap<String, CountryRanges>,
    /// Networks read in total (before merging).
    pub networks: u64,
}

/// How many bad CSV rows an [`ImportError::BadRows`] lists (the total is always given).
pub const MAX_BAD_ROWS: usize = 10;

/// Why a catalog could not be read. Every variant names the file(s) involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// [`read`] was given no paths.
    #[error("no input files given")]
    NoInput,
    /// A file or directory could not be opened or read.
    #[error("cannot read {}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is none of the supported formats.
    #[error("{}: unrecognized format: {reason}", .path.display())]
    UnknownFormat {
        /// The file or directory.
        path: PathBuf,
        /// What was found instead.
        reason: String,
    },
    /// The files do not make one catalog together (mixed formats, two databases, GeoLite2
    /// blocks without their locations file, ...).
    #[error("cannot import these files together: {reason}")]
    Inputs {
        /// What is wrong with the combination.
        reason: String,
    },
    /// The MaxMind DB is corrupt or truncated (the whole import fails).
    #[error("{}: corrupt or unreadable MaxMind DB", .path.display())]
    Mmdb {
        /// The database file.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// The MaxMind DB has records, but none with a country field this reader knows.
    #[error(
        "{}: MaxMind DB of type {database_type:?} has no country_code, country.iso_code or \
         registered_country.iso_code in any record",
        .path.display()
    )]
    UnknownSchema {
        /// The database file.
        path: PathBuf,
        /// Its `database_type` metadata.
        database_type: String,
    },
    /// A CSV file has invalid rows; nothing is imported.
    #[error("{}: {total} bad row{}: {}", .path.display(), plural(*.total), Joined(.rows, "; ", show_bad_row))]
    BadRows {
        /// The CSV file.
        path: PathBuf,
        /// How many rows are bad in total.
        total: u64,
        /// The first [`MAX_BAD_ROWS`] of them, in file order.
        rows: Vec<BadRow>,
    },
    /// A CSV file could not be read to its end (I/O or decompression error).
    #[error("{}: read error at line {line}", .path.display())]
    Read {
        /// The CSV file.
        path: PathBuf,
        /// The 1-based line being read.
        line: u64,
        /// The I/O (or gzip) error.
        #[source]
        source: std::io::Error,
    },
    /// The input was read without errors but holds no network with a country.
    #[error("no country ranges found in {}", Joined(.paths, ", ", |p, f| write!(f, "{}", p.display())))]
    Empty {
        /// The files read.
        paths: Vec<PathBuf>,
    },
}

/// One invalid CSV row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    /// 1-based line number in the (decompressed) file.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Reads the given file(s) into one [`Catalog`]: detects the format, reads every network,
/// groups by country and merges each country's ranges.
///
/// Synchronous and CPU-bound (a few seconds for a full-size database in a release build): call
/// it from a blocking thread. Shows a progress bar on stderr when `opts.progress` is set and
/// stderr is a terminal.
pub fn read(paths: &[PathBuf], opts: &ImportOptions) -> Result<Catalog, ImportError> {
    if paths.is_empty() {
        return Err(ImportError::NoInput);
    }
    let (format, built_at, database_type, collector) = match detect::plan(paths)? {
        detect::Plan::Mmdb { path, bytes } => {
            let pb = progress_bar(opts, None, "networks");
            let db = mmdb::read(&path, bytes, opts.country_field, &pb);
            pb.finish_and_clear();
            let db = db?;
            (db.format, db.built_at, Some(db.database_type), db.collector)
        }
        detect::Plan::GeoLite { locations, blocks } => {
            let pb = progress_bar(opts, detect::total_size(blocks.iter()), "bytes");
            let result = geolite_csv::read(&locations, &blocks, opts.country_field, &pb);
            pb.finish_and_clear();
            let database_type = geolite_csv::database_type(&blocks);
            (Format::GeoLite2Csv, None, database_type, result?)
        }
        detect::Plan::Ranges(files) => {
            let pb = progress_bar(
                opts,
                detect::total_size(files.iter().map(|f| &f.path)),
                "bytes",
            );
            let result = range_csv::read(&files, &pb);
            pb.finish_and_clear();
            (Format::RangeCsv, None, None, result?)
        }
    };
    if collector.skipped > 0 {
        tracing::info!(
            skipped = collector.skipped,
            networks = collector.networks,
            "networks without a usable country code were skipped"
        );
    }
    let networks = collector.networks;
    let countries = collector.finish();
    if countries.is_empty() {
        return Err(ImportError::Empty {
            paths: paths.to_vec(),
        });
    }
    Ok(Catalog {
        format,
        source: paths.to_vec(),
        built_at,
        database_type,
        countries,
        networks,
    })
}

/// Progress over the (compressed) bytes of CSV files.
const BYTES_TEMPLATE: &str =
    "{spinner} reading [{bar:30}] {binary_bytes}/{binary_total_bytes} ({eta})";
/// Progress over the networks of a MaxMind DB (their number is not known in advance).
const COUNT_TEMPLATE: &str = "{spinner} reading {human_pos} {msg} ({per_sec}, {elapsed})";

/// A progress bar on stderr, or a hidden one unless asked for and stderr is a terminal.
fn progress_bar(opts: &ImportOptions, len: Option<u64>, unit: &'static str) -> ProgressBar {
    if !opts.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (pb, template) = match len {
        Some(len) => (ProgressBar::new(len), BYTES_TEMPLATE),
        None => (ProgressBar::no_length(), COUNT_TEMPLATE),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(unit);
    pb
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A list shown item by item with `show`, separated by `separator`: the bad rows of
/// [`ImportError::BadRows`] (`line 3: reason; line 9: reason`), the paths of
/// [`ImportError::Empty`] (`a.csv, b.csv`).
struct Joined<'a, T>(
    &'a [T],
    &'static str,
    fn(&T, &mut fmt::Formatter<'_>) -> fmt::Result,
);

impl<T> fmt::Display for Joined<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Joined(items, separator, show) = self;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(separator)?;
            }
            show(item, f)?;
        }
        Ok(())
    }
}

/// `line 3: reason`.
fn show_bad_row(row: &BadRow, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "line {}: {}", row.line, row.reason)
}

/// Shorthand for [`ImportError::Io`].
fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The shared test data: `$IPCOUNTRY_DATA`, default `../shared/data` next to the crate.
#[cfg(test)]
pub(crate) fn data_dir() -> PathBuf {
    match std::env::var_os("IPCOUNTRY_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data")),
    }
}
