//! Small text formatting helpers for human output.

use std::time::{Duration, UNIX_EPOCH};

/// `1234567` → `1,234,567` (indicatif's `HumanCount`, already used for the progress bars).
pub(crate) fn thousands(n: u64) -> String {
    indicatif::HumanCount(n).to_string()
}
/// ` (Name)`, or nothing when the catalog has no name.
pub(crate) fn named(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}
/// At most `max` characters of `s`.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
/// Unix seconds as `2019-12-24 17:40:14 UTC`. Times humantime cannot format (before 1970, or
/// after 9999-12-31 23:59:59) are shown as the plain number: `Unix time -1 (out of range)`.
pub(crate) fn utc(secs: i64) -> String {
    let time = u64::try_from(secs)
        .ok()
        .filter(|&s| s <= LAST_FORMATTABLE)
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)));
    match time {
        // `2019-12-24T17:40:14Z` → `2019-12-24 17:40:14 UTC`.
        Some(time) => humantime::format_rfc3339_seconds(time)
            .to_string()
            .replacen('T', " ", 1)
            .replacen('Z', " UTC", 1),
        None => format!("Unix time {secs} (out of range)"),
    }
}

/// The last second humantime formats (9999-12-31 23:59:59); its `Display` fails after it.
const LAST_FORMATTABLE: u64 = 253_402_300_799;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1000, "1,000"),
            (447_857, "447,857"),
            (1_367_495, "1,367,495"),
        ] {
            assert_eq!(thousands(n), want);
        }
    }

    #[test]
    fn utc_formats_known_instants() {
        for (secs, want) in [
            (0, "1970-01-01 00:00:00 UTC"),
            (1_577_209_214, "2019-12-24 17:40:14 UTC"),
            (1_780_345_978, "2026-06-01 20:32:58 UTC"),
            (951_782_400, "2000-02-29 00:00:00 UTC"),
            (253_402_300_799, "9999-12-31 23:59:59 UTC"),
        ] {
            assert_eq!(utc(secs), want);
        }
    }

    #[test]
    fn utc_shows_unformattable_instants_as_numbers() {
        assert_eq!(utc(-1), "Unix time -1 (out of range)");
        assert_eq!(
            utc(253_402_300_800),
            "Unix time 253402300800 (out of range)"
        );
        for secs in [i64::MIN, i64::MAX] {
            assert_eq!(utc(secs), format!("Unix time {secs} (out of range)"));
        }
    }
}
