//! A policy rule as stored: one row of the `permit` or `deny` table.
//!
//! Rules flow one way: `store` loads them, `ranges::table` compiles them into the lookup
//! structure, and each compiled segment keeps the index of the rule it came from, so a verdict
//! can name "permit #12 203.0.113.0/24 office" in logs and in `ipcountry check`.

use std::fmt;

use serde::Serialize;

use super::range::IpRange;

/// Which table a rule lives in. Deny beats permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// The caller is let through (unless a deny rule also matches).
    Permit,
    /// The caller is screened, whatever the permit table says.
    Deny,
}

impl RuleKind {
    /// The table name, as used in SQL and in messages (`permit`, `deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Permit => "permit",
            RuleKind::Deny => "deny",
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleSource {
    /// Added by the admin (`ipcountry permit add ...`); country code `AA`.
    Custom,
    /// Private and local address space, compiled in (never stored).
    Builtin,
    /// Generated from the country catalog (`ipcountry country add US`).
    Geolite,
}

impl RuleSource {
    /// The name stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleSource::Custom => "custom",
            RuleSource::Builtin => "builtin",
            RuleSource::Geolite => "geolite",
        }
    }

    /// Parses the `source` column.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "custom" => Some(RuleSource::Custom),
            "builtin" => Some(RuleSource::Builtin),
            "geolite" => Some(RuleSource::Geolite),
            _ => None,
        }
    }
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The country code given to custom entries, as in the 2010 tool.
pub const CUSTOM_COUNTRY: &str = "AA";

/// When a stored entry stops counting, and whether it decides at all: the admin's terms for
/// a rule (`deny add ... --for 7d --shadow`). Generated and builtin rules have the default
/// (forever, deciding).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Terms {
    /// When it stops matching, in Unix seconds; `None` for never. An expired entry stays in
    /// its table (listed as expired) until `ipcountry purge` removes it.
    pub expires_at: Option<i64>,
    /// A shadow rule is logged when it matches, as if it decided, and decides nothing.
    pub shadow: bool,
}

impl Terms {
    /// Whether the entry has expired at `now` (Unix seconds): from its second on.
    pub fn expired_at(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

/// One permit or deny rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Row id in its table (`permit #12`); builtin rules have ids of their own, never stored.
    pub id: i64,
    /// Permit or deny.
    pub kind: RuleKind,
    /// The inclusive address range.
    pub range: IpRange,
    /// Two-letter country code; `AA` for custom entries.
    pub country: String,
    /// Where the rule came from.
    pub source: RuleSource,
    /// Free text from the admin.
    pub note: String,
    /// Expiry and shadow.
    pub terms: Terms,
}

impl fmt::Display for Rule {
    /// `permit #12 203.0.113.0/24 office`, `permit builtin 10.0.0.0/8 RFC 1918`, and for rules
    /// generated from the country catalog `geolite US 8.8.0.0/14`, so that `ipcountry check`
    /// says `permitted (geolite US 8.8.0.0/14)`: the country first, then the (merged) range
    /// that matched. Geolite rules are permit rules; the kind is only written for a geolite
    /// deny rule (`deny geolite US ...`), which ipcountry never generates. Their ids are left
    /// out: `refresh` regenerates them, so an id would not name the rule for long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl Rule {
    /// Writes the rule to `w` as `Display` does, piece by piece (it is most calls' reason).
    pub fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        if self.terms.shadow {
            w.write_str("shadow ")?;
        }
        match (self.source, self.kind) {
            (RuleSource::Custom, _) => {
                w.write_str(self.kind.as_str())?;
                write!(w, " #{} ", self.id)?;
            }
            (RuleSource::Builtin, _) => {
                w.write_str(self.kind.as_str())?;
                w.write_str(" builtin ")?;
            }
            (RuleSource::Geolite, RuleKind::Permit) => {
                w.write_str("geolite ")?;
                w.write_str(&self.country)?;
                w.write_char(' ')?;
            }
            (RuleSource::Geolite, RuleKind::Deny) => {
                w.write_str("deny geolite ")?;
                w.write_str(&self.country)?;
                w.write_char(' ')?;
            }
        }
        self.range.write_to(w)?;
        if !self.note.is_empty() {
            w.write_char(' ')?;
            w.write_str(&self.note)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_rule_as_check_prints_it() {
        use RuleKind::{Deny, Permit};
        use RuleSource::{Builtin, Custom, Geolite};
        // Rule #12 as (kind, source, country, range, note), and how it is shown.
        #[rustfmt::skip]
        let cases = [
            (Permit, Custom, "AA", "203.0.113.0/24", "office", "permit #12 203.0.113.0/24 office"),
            (Deny, Custom, "AA", "203.0.113.66", "", "deny #12 203.0.113.66/32"),
            (Permit, Builtin, "", "10.0.0.0/8", "RFC 1918", "permit builtin 10.0.0.0/8 RFC 1918"),
            (Permit, Geolite, "US", "8.8.0.0/14", "", "geolite US 8.8.0.0/14"),
            (Permit, Geolite, "DE", "5.0.0.0-5.0.2.255", "", "geolite DE 5.0.0.0-5.0.2.255"),
            (Deny, Geolite, "US", "8.8.0.0/14", "", "deny geolite US 8.8.0.0/14"),
        ];
        for (kind, source, country, range, note, want) in cases {
            let rule = Rule {
                id: 12,
                kind,
                range: range.parse().unwrap(),
                country: country.into(),
                source,
                note: note.into(),
                terms: Terms::default(),
            };
            assert_eq!(rule.to_string(), want);
        }
        let shadow = Rule {
            id: 7,
            kind: Deny,
            range: "198.51.100.7".parse().unwrap(),
            country: "AA".into(),
            source: Custom,
            note: "scanner".into(),
            terms: Terms {
                expires_at: Some(100),
                shadow: true,
            },
        };
        assert_eq!(shadow.to_string(), "shadow deny #7 198.51.100.7/32 scanner");
        assert!(!shadow.terms.expired_at(99));
        assert!(shadow.terms.expired_at(100));
        assert!(!Terms::default().expired_at(i64::MAX));
    }
}
