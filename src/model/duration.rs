use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written like `90s`, `5m`, `1h30m`, `2d` or `250ms`.
///
/// A unit is always required: a bare `30` is refused rather than guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1_000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
];

impl Duration {
    /// Parses `1h30m`-style text; the error says what is wrong and what to write.
    ///
    /// ```
    /// use ward::model::Duration;
    /// assert_eq!(Duration::parse("1h30m").unwrap().std().as_secs(), 5400);
    /// assert!(Duration::parse("30").unwrap_err().to_string().contains("no unit"));
    /// ```
    pub fn parse(text: &str) -> Result<Duration, DurationError> {
        let t = text.trim();
        let text = || t.to_owned();
        if t.is_empty() {
            return Err(DurationError::Empty);
        }
        if t.chars().all(|c| c.is_ascii_digit()) {
            return Err(DurationError::NoUnit(text()));
        }
        let mut total_ms: u64 = 0;
        let mut rest = t;
        let mut last_unit = u64::MAX;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(DurationError::Invalid(text()));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| DurationError::NumberTooLarge(text()))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
                return Err(DurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    text: text(),
                });
            };
            if factor >= last_unit {
                return Err(DurationError::OutOfOrder(text()));
            }
            last_unit = factor;
            total_ms = n
                .checked_mul(factor)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(|| DurationError::TooLong(text()))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration(std::time::Duration::from_millis(total_ms)))
    }

    /// The standard-library duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }
}

/// Why a text is not a duration (each case says what to write instead);
/// the texts are the duration as written, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing was written.
    #[error("empty duration; write e.g. `30s`, `5m` or `1h30m`")]
    Empty,
    /// A bare number.
    #[error("duration `{0}` has no unit; write e.g. `{0}s` or `{0}m`")]
    NoUnit(String),
    /// A unit where a number belongs.
    #[error("invalid duration `{0}`; write a number and a unit (ms, s, m, h, d), e.g. `1h30m`")]
    Invalid(String),
    /// A number that does not fit.
    #[error("number too large in duration `{0}`")]
    NumberTooLarge(String),
    /// A unit ward does not know.
    #[error("unknown unit `{unit}` in duration `{text}`; use ms, s, m, h or d")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The duration.
        text: String,
    },
    /// Units repeated or smaller before larger.
    #[error(
        "duration `{0}` repeats a unit or has them out of order; write larger units first, e.g. `1h30m`"
    )]
    OutOfOrder(String),
    /// The total does not fit.
    #[error("duration `{0}` is too long")]
    TooLong(String),
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, factor) in UNITS.iter().rev() {
            if ms >= *factor {
                write!(f, "{}{unit}", ms / factor)?;
                ms %= factor;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `30s`, `5m` or `1h30m`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit; write e.g. `{v}s` or `{v}m`"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$",
            "description": "A duration with units, largest first: `90s`, `5m`, `1h30m`, `2d`, `250ms`.",
            "examples": ["30s", "5m", "1h30m"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> u128 {
        Duration::parse(text).expect(text).0.as_millis()
    }

    #[test]
    fn parses_compound_durations() {
        assert_eq!(ms("90s"), 90_000);
        assert_eq!(ms("5m"), 300_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("2d"), 172_800_000);
        assert_eq!(ms("1m500ms"), 60_500);
    }

    #[test]
    fn refuses_bad_durations_with_advice() {
        let why = |text: &str| Duration::parse(text).expect_err(text).to_string();
        assert_eq!(
            why(" 30 "),
            "duration `30` has no unit; write e.g. `30s` or `30m`"
        );
        assert_eq!(
            why("5x"),
            "unknown unit `x` in duration `5x`; use ms, s, m, h or d"
        );
        assert_eq!(
            why("30m1h"),
            "duration `30m1h` repeats a unit or has them out of order; write larger units first, e.g. `1h30m`"
        );
        assert_eq!(
            why("m"),
            "invalid duration `m`; write a number and a unit (ms, s, m, h, d), e.g. `1h30m`"
        );
        assert_eq!(why(""), "empty duration; write e.g. `30s`, `5m` or `1h30m`");
        assert_eq!(
            why("99999999999999999999s"),
            "number too large in duration `99999999999999999999s`"
        );
        assert_eq!(
            why("99999999999999999d"),
            "duration `99999999999999999d` is too long"
        );
    }

    #[test]
    fn displays_round_trip() {
        for t in ["1h30m", "5m", "250ms", "2d3h", "0s"] {
            assert_eq!(Duration::parse(t).expect(t).to_string(), t);
        }
    }
}
