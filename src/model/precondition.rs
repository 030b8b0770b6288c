//! `preconditions:` as written, and the two value types they read: a size
//! (`10G`) and the `min:` of `free_space` (a size, or `1.5x last`).
//!
//! The values are kept as YAML nodes here: they may hold templates, and
//! are rendered and typed by validation (`validate/preconditions.rs`), as
//! action parameters are.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::Spanned;
use crate::source::Span;
use crate::yaml::Node;

/// One entry of `preconditions:`: a one-key mapping, `kind: value`.
#[derive(Clone, Debug)]
pub struct Precondition {
    /// Which check (the key).
    pub kind: Spanned<PreconditionKind>,
    /// Its value as written (templates not rendered yet).
    pub value: Node,
    /// The whole entry.
    pub span: Span,
}

/// The checks a precondition can make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreconditionKind {
    /// `free_space: {path, min}`.
    FreeSpace,
    /// `path_exists: PATH`.
    PathExists,
    /// `path_absent: PATH` (e.g. a restore's marker).
    PathAbsent,
    /// `command: [argv]` or `{argv, timeout}`.
    Command,
    /// `tcp: host:port` or `{address, timeout}`.
    Tcp,
    /// `not_running:` a process matcher, as `service.stop`'s `wait_gone`.
    NotRunning,
    /// `on_ac_power: true`.
    OnAcPower,
}

impl PreconditionKind {
    /// Every kind, by the key that names it.
    pub const ALL: [(&'static str, PreconditionKind); 7] = [
        ("free_space", PreconditionKind::FreeSpace),
        ("path_exists", PreconditionKind::PathExists),
        ("path_absent", PreconditionKind::PathAbsent),
        ("command", PreconditionKind::Command),
        ("tcp", PreconditionKind::Tcp),
        ("not_running", PreconditionKind::NotRunning),
        ("on_ac_power", PreconditionKind::OnAcPower),
    ];

    /// The key that names it.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(n, _)| n)
    }

    /// The kind a key names.
    pub fn parse(key: &str) -> Option<PreconditionKind> {
        Self::ALL.iter().find(|(n, _)| *n == key).map(|(_, k)| *k)
    }

    /// The keys, for "did you mean" and lists of what is allowed.
    pub fn names() -> impl Iterator<Item = &'static str> {
        Self::ALL.iter().map(|(n, _)| *n)
    }
}

/// Binary units, as `df -h` shows them: K = 1024 bytes.
const SIZE_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
    ("T", 1 << 40),
];

/// A size in bytes, written with a unit: `500M`, `10G`, `1.5T`, `4096B`.
/// Units are powers of 1024 (`K`, `M`, `G`, `T`; `KiB`, `MB` and the like
/// mean the same), as `df -h` counts. A bare number is refused, as for
/// durations: `10` could mean bytes or gigabytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `10G`-style text; the error says what to write.
    ///
    /// ```
    /// use ward::model::ByteSize;
    /// assert_eq!(ByteSize::parse("1.5K").unwrap().0, 1536);
    /// assert!(ByteSize::parse("10").unwrap_err().contains("no unit"));
    /// ```
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (&t[..split], t[split..].trim());
        if number.is_empty() || number.parse::<f64>().is_err() {
            return Err(format!(
                "invalid size `{t}`; write a number and a unit (B, K, M, G, T), e.g. `10G` or `500M`"
            ));
        }
        if unit.is_empty() {
            return Err(format!(
                "size `{t}` has no unit; write e.g. `{number}G` or `{number}M` (or `{number}B` for bytes)"
            ));
        }
        let upper = unit.to_ascii_uppercase();
        let letter = upper
            .strip_suffix("IB")
            .or_else(|| upper.strip_suffix('B').filter(|u| !u.is_empty()))
            .unwrap_or(&upper);
        let Some(&(_, factor)) = SIZE_UNITS.iter().find(|(u, _)| *u == letter) else {
            return Err(format!(
                "unknown unit `{unit}` in size `{t}`; use B, K, M, G or T (powers of 1024)"
            ));
        };
        let value: f64 = number.parse().unwrap_or(f64::NAN);
        let bytes = value * factor as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("size `{t}` is too large"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that keeps one decimal meaningful: `10.0G`, `512B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(&(unit, factor)) = SIZE_UNITS.iter().rev().find(|(_, n)| self.0 >= *n) else {
            return f.write_str("0B");
        };
        if factor == 1 {
            write!(f, "{}B", self.0)
        } else {
            write!(f, "{:.1}{unit}", self.0 as f64 / factor as f64)
        }
    }
}

/// The `min:` of a `free_space` precondition: a size, or a multiple of the
/// size of the playbook's last successful run (`1.5x last`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MinFree {
    /// At least this many bytes free.
    Size(ByteSize),
    /// At least this many times the last successful run's size.
    TimesLast(f64),
}

impl MinFree {
    /// Parses `10G` or `1.5x last`.
    ///
    /// ```
    /// use ward::model::{ByteSize, MinFree};
    /// assert_eq!(MinFree::parse("2x last").unwrap(), MinFree::TimesLast(2.0));
    /// assert_eq!(MinFree::parse("1M").unwrap(), MinFree::Size(ByteSize(1 << 20)));
    /// ```
    pub fn parse(text: &str) -> Result<MinFree, String> {
        let t = text.trim();
        let Some(factor) = t.strip_suffix("last") else {
            return ByteSize::parse(t)
                .map(MinFree::Size)
                .map_err(|e| format!("{e}; or a multiple of the last backup, e.g. `1.5x last`"));
        };
        let factor = factor.trim_end();
        let number = factor
            .strip_suffix(['x', 'X', '*'])
            .map(str::trim_end)
            .ok_or_else(|| {
                format!(
                    "invalid `min` `{t}`; write a multiple of the last backup as e.g. `1.5x last`"
                )
            })?;
        match number.parse::<f64>() {
            Ok(n) if n.is_finite() && n > 0.0 => Ok(MinFree::TimesLast(n)),
            _ => Err(format!(
                "invalid `min` `{t}`: the multiple must be a number above 0, e.g. `1.5x last`"
            )),
        }
    }
}

impl fmt::Display for MinFree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MinFree::Size(s) => write!(f, "{s}"),
            MinFree::TimesLast(n) => write!(f, "{n}x last"),
        }
    }
}

impl<'de> Deserialize<'de> for MinFree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MinFree, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MinFree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as `10G` or a multiple such as `1.5x last`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MinFree, E> {
                MinFree::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MinFree, E> {
                Err(E::custom(format!(
                    "size `{v}` has no unit; write e.g. `{v}G` or `{v}M` (or `{v}B` for bytes)"
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MinFree, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<MinFree, E> {
                Err(E::custom(format!(
                    "size `{v}` has no unit; write e.g. `{v}G`, or `{v}x last` for a multiple of the last backup"
                )))
            }
        }
        d.deserialize_str(V)
    }
}

impl Serialize for MinFree {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for MinFree {
    fn schema_name() -> Cow<'static, str> {
        "MinFree".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": r"^\s*([0-9]+(\.[0-9]+)?\s*([BKMGTbkmgt]|[KMGTkmgt][iI]?[Bb])|[0-9]+(\.[0-9]+)?\s*[xX*]\s*last)\s*$|\{\{",
            "description": "A size with a unit (powers of 1024): `500M`, `10G`, `1.5T`; or a multiple of the size of the playbook's last successful run: `1.5x last`; or a template that renders to one.",
            "examples": ["10G", "500M", "1.5x last"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(ByteSize::parse("10G"), Ok(ByteSize(10 << 30)));
        assert_eq!(ByteSize::parse("500M"), Ok(ByteSize(500 << 20)));
        assert_eq!(ByteSize::parse("1.5K"), Ok(ByteSize(1536)));
        assert_eq!(ByteSize::parse("4096B"), Ok(ByteSize(4096)));
        assert_eq!(ByteSize::parse("2GiB"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse("2gb"), Ok(ByteSize(2 << 30)));
        assert_eq!(ByteSize::parse(" 1 T "), Ok(ByteSize(1 << 40)));
    }

    #[test]
    fn bad_sizes_say_what_to_write() {
        assert!(ByteSize::parse("10").expect_err("unit").contains("no unit"));
        assert!(
            ByteSize::parse("10X")
                .expect_err("unit")
                .contains("unknown unit")
        );
        assert!(ByteSize::parse("G").is_err());
        assert!(ByteSize::parse("").is_err());
        assert!(ByteSize::parse("1.2.3G").is_err());
        assert!(ByteSize::parse("99999999999T").is_err());
    }

    #[test]
    fn min_free_is_a_size_or_a_multiple_of_the_last_run() {
        assert_eq!(MinFree::parse("1.5x last"), Ok(MinFree::TimesLast(1.5)));
        assert_eq!(MinFree::parse("2 x last"), Ok(MinFree::TimesLast(2.0)));
        assert_eq!(MinFree::parse("10G"), Ok(MinFree::Size(ByteSize(10 << 30))));
        assert!(MinFree::parse("0x last").is_err());
        assert!(MinFree::parse("last").is_err());
        assert!(MinFree::parse("ax last").is_err());
        assert!(
            MinFree::parse("10")
                .expect_err("unit")
                .contains("1.5x last")
        );
    }

    #[test]
    fn sizes_display_readably() {
        assert_eq!(ByteSize(10 << 30).to_string(), "10.0G");
        assert_eq!(ByteSize(512).to_string(), "512B");
        assert_eq!(ByteSize(0).to_string(), "0B");
        assert_eq!(MinFree::TimesLast(1.5).to_string(), "1.5x last");
    }
}
