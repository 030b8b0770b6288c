//! A serde deserializer over the spanned [`Node`] tree.
//!
//! Errors name the exact node: the innermost deserializer that sees an error
//! without a place attaches its own span, so a wrong type points at the value,
//! an unknown field at its key and a missing field at the mapping.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, VariantAccess, Visitor,
};

use super::node::{Entry, Node, NodeKind};
use super::resolve::{Resolved, resolve_plain};
use crate::diagnostic::{Diagnostic, suggest};
use crate::source::Span;

/// A deserialization error with the place it happened.
#[derive(Clone, Debug, PartialEq)]
pub struct DeError {
    /// Diagnostic code: `unknown-key`, `missing-key`, `invalid-value` or `invalid-type`.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// Where; filled in by the innermost node that saw the error.
    pub span: Option<Span>,
}

impl DeError {
    fn new(code: &'static str, message: String) -> DeError {
        DeError {
            code,
            message,
            help: None,
            span: None,
        }
    }

    fn or_span(mut self, span: Span) -> DeError {
        self.span.get_or_insert(span);
        self
    }

    /// Turns the error into a diagnostic; `context` (e.g. "in step `x`") is appended.
    pub fn into_diagnostic(self, fallback: Span, context: &str) -> Diagnostic {
        let message = if context.is_empty() {
            self.message
        } else {
            format!("{} {context}", self.message)
        };
        Diagnostic::error(self.code, self.span.unwrap_or(fallback), message)
            .with_help_opt(self.help)
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn one_of(expected: &'static [&'static str]) -> String {
    let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
    format!("expected one of {}", list.join(", "))
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::new("invalid-value", msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(
            "invalid-type",
            format!(
                "expected {}, found {}",
                plain_expected(&exp.to_string()),
                describe(&unexp)
            ),
        )
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(
            "invalid-value",
            format!(
                "invalid value {}: expected {}",
                describe(&unexp),
                plain_expected(&exp.to_string())
            ),
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::new("unknown-key", format!("unknown key `{field}`"));
        e.help = Some(suggest(field, expected.iter().copied()).unwrap_or_else(|| one_of(expected)));
        e
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::new("invalid-value", format!("unknown value `{variant}`"));
        e.help = Some(match suggest(variant, expected.iter().copied()) {
            Some(s) => s,
            None => one_of(expected),
        });
        e
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new("missing-key", format!("missing required key `{field}`"))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new("duplicate-key", format!("duplicate key `{field}`"))
    }
}

/// What serde expected, in the playbook's words: its derived types say
/// `u32` or `struct History`, which mean nothing to an operator.
fn plain_expected(exp: &str) -> String {
    match exp {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "`true` or `false`".into(),
        "char" => "a single character".into(),
        _ if exp.starts_with("struct ") || exp.starts_with("a map") => "a mapping".into(),
        _ if exp.starts_with("a sequence") || exp.starts_with("a tuple") => "a list".into(),
        _ if exp.starts_with("enum ") => "one of the listed values".into(),
        other => other.into(),
    }
}

fn describe(u: &Unexpected<'_>) -> String {
    match u {
        Unexpected::Unit => "null".into(),
        Unexpected::Str(s) => format!("the string `{s}`"),
        Unexpected::Seq => "a list".into(),
        Unexpected::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// Deserializes a `T` from a node; errors carry the span of the offending node.
pub fn from_node<T: DeserializeOwned>(node: &Node) -> Result<T, DeError> {
    T::deserialize(NodeDe(node)).map_err(|e: DeError| e.or_span(node.span))
}

/// The deserializer for one node.
#[derive(Clone, Copy)]
struct NodeDe<'a>(&'a Node);

impl NodeDe<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match &self.0.kind {
            NodeKind::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Resolved::Null => Unexpected::Unit,
                Resolved::Bool(b) => Unexpected::Bool(b),
                Resolved::Int(i) => Unexpected::Signed(i),
                Resolved::UInt(u) => Unexpected::Unsigned(u),
                Resolved::Float(f) => Unexpected::Float(f),
                Resolved::Str(s) => Unexpected::Str(s),
            },
            NodeKind::Scalar(s) => Unexpected::Str(&s.text),
            NodeKind::Seq(_) => Unexpected::Seq,
            NodeKind::Map(_) => Unexpected::Map,
        }
    }

    fn wrong_type(&self, exp: &dyn de::Expected) -> DeError {
        <DeError as de::Error>::invalid_type(self.unexpected(), exp).or_span(self.0.span)
    }

    fn resolved(&self) -> Option<Resolved<'_>> {
        match &self.0.kind {
            NodeKind::Scalar(s) if s.plain => Some(resolve_plain(&s.text)),
            _ => None,
        }
    }

    fn span(&self) -> Span {
        self.0.span
    }
}

macro_rules! deserialize_integer {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let r = match self.resolved() {
                Some(Resolved::Int(i)) => visitor.visit_i64(i),
                Some(Resolved::UInt(u)) => visitor.visit_u64(u),
                _ => return Err(self.wrong_type(&visitor)),
            };
            r.map_err(|e: DeError| e.or_span(self.span()))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.0.kind {
            NodeKind::Scalar(s) if s.plain => match resolve_plain(&s.text) {
                Resolved::Null => visitor.visit_unit(),
                Resolved::Bool(b) => visitor.visit_bool(b),
                Resolved::Int(i) => visitor.visit_i64(i),
                Resolved::UInt(u) => visitor.visit_u64(u),
                Resolved::Float(f) => visitor.visit_f64(f),
                Resolved::Str(s) => visitor.visit_str(s),
            },
            NodeKind::Scalar(s) => visitor.visit_str(&s.text),
            NodeKind::Seq(items) => visitor.visit_seq(Seq(items.iter())),
            NodeKind::Map(entries) => visitor.visit_map(Map {
                entries: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e: DeError| e.or_span(self.span()))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.resolved() {
            Some(Resolved::Bool(b)) => visitor
                .visit_bool(b)
                .map_err(|e: DeError| e.or_span(self.span())),
            _ => Err(self.wrong_type(&"`true` or `false`")),
        }
    }

    deserialize_integer! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match self.resolved() {
            Some(Resolved::Int(i)) => visitor.visit_f64(i as f64),
            Some(Resolved::UInt(u)) => visitor.visit_f64(u as f64),
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            _ => return Err(self.wrong_type(&visitor)),
        };
        r.map_err(|e: DeError| e.or_span(self.span()))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Any non-null scalar is text where text is expected: `NO` stays "NO"
        // and `5432` becomes "5432".
        match &self.0.kind {
            NodeKind::Scalar(s) if !(s.plain && super::resolve::is_null(&s.text)) => visitor
                .visit_str(&s.text)
                .map_err(|e: DeError| e.or_span(self.span())),
            _ => Err(self.wrong_type(&"a string")),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
        .map_err(|e: DeError| e.or_span(self.span()))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            visitor
                .visit_unit()
                .map_err(|e: DeError| e.or_span(self.span()))
        } else {
            Err(self.wrong_type(&"null"))
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: DeError| e.or_span(self.span()))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Seq(items) => visitor
                .visit_seq(Seq(items.iter()))
                .map_err(|e: DeError| e.or_span(self.span())),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.0.kind {
            NodeKind::Map(entries) => visitor
                .visit_map(Map {
                    entries: entries.iter(),
                    value: None,
                })
                .map_err(|e: DeError| e.or_span(self.span())),
            _ => Err(self.wrong_type(&visitor)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if self.0.is_null() {
            // `with:` left empty means "no parameters", like `{}`.
            return visitor
                .visit_map(Map {
                    entries: [].iter(),
                    value: None,
                })
                .map_err(|e: DeError| e.or_span(self.span()));
        }
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.0.kind {
            NodeKind::Scalar(_) => visitor.visit_enum(Enum {
                variant: self.0,
                value: None,
            }),
            NodeKind::Map(entries) if entries.len() == 1 => visitor.visit_enum(Enum {
                variant: &entries[0].key,
                value: Some(&entries[0].value),
            }),
            _ => return Err(self.wrong_type(&visitor)),
        };
        r.map_err(|e: DeError| e.or_span(self.span()))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Seq<'a>(std::slice::Iter<'a, Node>);

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some(node) => seed
                .deserialize(NodeDe(node))
                .map(Some)
                .map_err(|e: DeError| e.or_span(node.span)),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'a> {
    entries: std::slice::Iter<'a, Entry>,
    value: Option<&'a Node>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some(entry) => {
                self.value = Some(&entry.value);
                seed.deserialize(NodeDe(&entry.key))
                    .map(Some)
                    .map_err(|e: DeError| e.or_span(entry.key.span))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self
            .value
            .take()
            .ok_or_else(|| <DeError as de::Error>::custom("value requested before key"))?;
        seed.deserialize(NodeDe(node))
            .map_err(|e: DeError| e.or_span(node.span))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

struct Enum<'a> {
    variant: &'a Node,
    value: Option<&'a Node>,
}

impl<'de, 'a> EnumAccess<'de> for Enum<'a> {
    type Error = DeError;
    type Variant = Variant<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Variant<'a>), DeError> {
        let name = self
            .variant
            .as_str()
            .ok_or_else(|| NodeDe(self.variant).wrong_type(&"a name"))?;
        let v = seed
            .deserialize(name.into_deserializer())
            .map_err(|e: DeError| e.or_span(self.variant.span))?;
        Ok((
            v,
            Variant {
                at: self.variant,
                value: self.value,
            },
        ))
    }
}

struct Variant<'a> {
    at: &'a Node,
    value: Option<&'a Node>,
}

impl<'de> VariantAccess<'de> for Variant<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(v) => Err(NodeDe(v).wrong_type(&"no value")),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(v) => seed
                .deserialize(NodeDe(v))
                .map_err(|e: DeError| e.or_span(v.span)),
            None => Err(NodeDe(self.at).wrong_type(&"a value")),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(v) => de::Deserializer::deserialize_seq(NodeDe(v), visitor),
            None => Err(NodeDe(self.at).wrong_type(&"a list")),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Some(v) => de::Deserializer::deserialize_map(NodeDe(v), visitor),
            None => Err(NodeDe(self.at).wrong_type(&"a mapping")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, load};
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Params {
        unit: String,
        port: Option<u16>,
        #[serde(default)]
        force: bool,
    }

    fn node(text: &str) -> Node {
        load(text, Limits::default()).0.expect("root")
    }

    #[test]
    fn reads_typed_struct() {
        let p: Params = from_node(&node("unit: NO\nport: 5432\nforce: true\n")).expect("ok");
        assert_eq!(
            p,
            Params {
                unit: "NO".into(),
                port: Some(5432),
                force: true
            }
        );
    }

    #[test]
    fn unknown_key_points_at_key_with_suggestion() {
        let e = from_node::<Params>(&node("unit: a\nprot: 1\n")).expect_err("err");
        assert_eq!(e.code, "unknown-key");
        assert_eq!(e.span.expect("span").start.line, 2);
        assert_eq!(e.help.as_deref(), Some("did you mean `port`?"));
    }

    #[test]
    fn wrong_type_points_at_value() {
        let e = from_node::<Params>(&node("unit: a\nport: 70000\n")).expect_err("err");
        assert_eq!(
            e.span.expect("span").start,
            crate::source::Pos { line: 2, col: 7 }
        );
        let e = from_node::<Params>(&node("unit: a\nforce: yes\n")).expect_err("err");
        assert!(e.message.contains("`true` or `false`"), "{}", e.message);
    }

    #[test]
    fn expected_types_are_named_in_the_playbooks_words() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            n: u32,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            port: Option<u16>,
            inner: Option<Inner>,
            count: Option<usize>,
        }
        let message = |text: &str| from_node::<Outer>(&node(text)).expect_err("err").message;
        let m = message("port: 70000\n");
        assert!(
            m.ends_with("expected a whole number from 0 to 65535"),
            "{m}"
        );
        let m = message("count: -1\n");
        assert!(m.ends_with("expected a whole number, 0 or more"), "{m}");
        let m = message("inner: 5\n");
        assert!(m.starts_with("expected a mapping, found"), "{m}");
        let m = message("inner: {n: x}\n");
        assert!(!m.contains("u32") && m.contains("whole number"), "{m}");
    }

    #[test]
    fn missing_key_points_at_mapping() {
        let e = from_node::<Params>(&node("port: 1\n")).expect_err("err");
        assert_eq!(e.code, "missing-key");
        assert_eq!(e.span.expect("span").start.line, 1);
    }
}
