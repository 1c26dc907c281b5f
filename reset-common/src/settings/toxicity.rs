//! TOXICITY: a percentage carried as parts per million, exact for every decimal with up to 4
//! places. `30`, `0.5`, `99.9999` and `50%` are read; signs, exponents, NaN, more than 4
//! decimals and anything outside 0-100 are refused.

use core::fmt;

use super::{SettingError, TOXICITY};

/// Toxicity in parts per million (0..=1_000_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Toxicity(u32);

impl Toxicity {
    /// Parts per million.
    pub fn ppm(self) -> u32 {
        self.0
    }

    /// Percent (0.0..=100.0).
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 10_000.0
    }

    /// From parts per million; `None` above one million.
    pub fn from_ppm(ppm: u32) -> Option<Self> {
        (ppm <= 1_000_000).then_some(Self(ppm))
    }

    /// Parses "30", "0.5", "99.9999", "50%"; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().strip_suffix('%').unwrap_or(s.trim());
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        if frac.len() > 4 || int.len() > 3 {
            return None;
        }
        let int: u32 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut frac_ppm = 0u32;
        for (i, b) in frac.bytes().enumerate() {
            frac_ppm += u32::from(b - b'0') * 10u32.pow(3 - i as u32);
        }
        Self::from_ppm(int.checked_mul(10_000)?.checked_add(frac_ppm)?)
    }

    /// [`Toxicity::parse`], refusing with the message both binaries print.
    pub fn read(s: &str) -> Result<Self, SettingError> {
        Self::parse(s).ok_or_else(|| {
            SettingError::invalid(
                TOXICITY.env,
                s,
                "a percentage from 0 to 100 (up to 4 decimals)",
                "e.g. TOXICITY=50, TOXICITY=0.5 or TOXICITY=50%",
            )
        })
    }
}

/// The shortest decimal: `30`, `0.5`, `99.9999`.
impl fmt::Display for Toxicity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = std::format!("{}.{:04}", self.0 / 10_000, self.0 % 10_000);
        f.write_str(s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Serialized as the percentage (a JSON or TOML number), as reports and config files show it.
impl serde::Serialize for Toxicity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.percent())
    }
}
