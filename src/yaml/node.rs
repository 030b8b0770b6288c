//! The spanned YAML tree that every later stage reads.

use crate::source::Span;

/// One YAML node and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub kind: NodeKind,
    /// Where the node was written (for an alias: where the alias was written).
    pub span: Span,
}

/// Scalar, sequence or mapping.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// A scalar keeps its text; whether it is a number, a bool or null is
    /// decided by the type that reads it (see `yaml::resolve`).
    Scalar(Scalar),
    /// A sequence (`- a` or `[a, b]`).
    Seq(Vec<Node>),
    /// A mapping, in the order written; duplicate keys were refused when loading.
    Map(Vec<Entry>),
}

/// A scalar's text and how it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The text after YAML unescaping/folding.
    pub text: String,
    /// True for plain (unquoted, non-block) scalars, which may be numbers,
    /// bools or null; quoted and block scalars are always strings.
    pub plain: bool,
}

/// One `key: value` pair of a mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The key node (almost always a scalar).
    pub key: Node,
    /// The value node.
    pub value: Node,
}

impl Node {
    /// A plain scalar node, for values that come from outside a file (`--var`).
    pub fn plain(text: impl Into<String>, span: Span) -> Node {
        Node {
            kind: NodeKind::Scalar(Scalar {
                text: text.into(),
                plain: true,
            }),
            span,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.kind {
            NodeKind::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The items, if this is a sequence.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// True for `~`, `null`, `Null`, `NULL` or an empty plain scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s) if s.plain && super::resolve::is_null(&s.text))
    }

    /// A short description of the node's kind for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(s) if s.plain => super::resolve::resolve_plain(&s.text).kind_name(),
            NodeKind::Scalar(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Number of nodes in this subtree (used for the alias budget).
    pub fn size(&self) -> usize {
        match &self.kind {
            NodeKind::Scalar(_) => 1,
            NodeKind::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            NodeKind::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|e| e.key.size() + e.value.size())
                    .sum::<usize>()
            }
        }
    }
}
