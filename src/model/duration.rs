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
    /// assert!(Duration::parse("30").unwrap_err().contains("no unit"));
    /// ```
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration; write e.g. `30s`, `5m` or `1h30m`".into());
        }
        if t.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!(
                "duration `{t}` has no unit; write e.g. `{t}s` or `{t}m`"
            ));
        }
        let mut total_ms: u64 = 0;
        let mut rest = t;
        let mut last_unit = u64::MAX;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(format!(
                    "invalid duration `{t}`; write a number and a unit (ms, s, m, h, d), e.g. `1h30m`"
                ));
            }
            let n: u64 = rest[..digits]
                .parse()
                .map_err(|_| format!("number too large in duration `{t}`"))?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = &rest[..unit_len];
            let Some(&(_, factor)) = UNITS.iter().find(|(u, _)| *u == unit) else {
                return Err(format!(
                    "unknown unit `{unit}` in duration `{t}`; use ms, s, m, h or d"
                ));
            };
            if factor >= last_unit {
                return Err(format!(
                    "duration `{t}` repeats a unit or has them out of order; write larger units first, e.g. `1h30m`"
                ));
            }
            last_unit = factor;
            total_ms = n
                .checked_mul(factor)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(|| format!("duration `{t}` is too long"))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration(std::time::Duration::from_millis(total_ms)))
    }

    /// The standard-library duration.
    pub fn std(self) -> std::time::Duration {
        self.0
    }
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
        assert!(
            Duration::parse("30")
                .expect_err("no unit")
                .contains("`30s`")
        );
        assert!(
            Duration::parse("5x")
                .expect_err("unit")
                .contains("unknown unit")
        );
        assert!(
            Duration::parse("30m1h")
                .expect_err("order")
                .contains("larger units first")
        );
        assert!(Duration::parse("m").is_err());
        assert!(Duration::parse("").is_err());
        assert!(Duration::parse("99999999999999999999s").is_err());
    }

    #[test]
    fn displays_round_trip() {
        for t in ["1h30m", "5m", "250ms", "2d3h", "0s"] {
            assert_eq!(Duration::parse(t).expect(t).to_string(), t);
        }
    }
}
