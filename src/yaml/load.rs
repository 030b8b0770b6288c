//! Builds the spanned [`Node`] tree from parser events, refusing hostile input.
//!
//! Limits are checked while events stream in, so an alias bomb or a deeply
//! nested file is refused before it costs memory: aliases are expanded
//! against a node budget, nesting against a depth limit, and the file size
//! is checked by the caller before the text is read.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Span as YamlSpan};

use super::node::{Entry, Node, NodeKind, Scalar};
use crate::diagnostic::Diagnostic;
use crate::source::{Pos, Span};

/// Bounds on what a playbook may cost to read.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Maximum nodes in the tree, counting every alias expansion.
    pub max_nodes: usize,
    /// Maximum nesting of sequences and mappings.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        // A 5,000-step playbook is about 100,000 nodes; ten times that is
        // still ~100 MB at worst, and an alias bomb hits it in milliseconds.
        Limits {
            max_nodes: 1_000_000,
            max_depth: 64,
        }
    }
}

/// Parses one YAML document. Returns the root (None for an empty or
/// unreadable document) and every problem found on the way.
pub fn load(text: &str, limits: Limits) -> (Option<Node>, Vec<Diagnostic>) {
    let mut builder = Builder {
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
        diagnostics: Vec::new(),
    };
    for event in Parser::new_from_str(text) {
        let step = match event {
            Ok((event, span)) => builder.on_event(event, span),
            Err(e) => Err(syntax_error(text, e.marker(), e.info())),
        };
        if let Err(d) = step {
            builder.diagnostics.push(d);
            return (None, builder.diagnostics);
        }
    }
    if builder.root.is_none() && builder.diagnostics.is_empty() {
        builder.diagnostics.push(
            Diagnostic::error("empty", Span::point(1, 1), "the playbook is empty")
                .with_help("start with `ward: 1`, a `name:` and a list of `steps:`"),
        );
    }
    (builder.root, builder.diagnostics)
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        span: Span,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<Node>,
        seen: HashMap<String, Span>,
        /// A duplicate key's value is read but dropped.
        skip_value: bool,
    },
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
    diagnostics: Vec<Diagnostic>,
}

fn pos(m: &Marker) -> Pos {
    Pos {
        line: u32::try_from(m.line()).unwrap_or(u32::MAX),
        col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
    }
}

fn span(s: &YamlSpan) -> Span {
    Span::new(pos(&s.start), pos(&s.end))
}

fn syntax_error(text: &str, at: &Marker, info: &str) -> Diagnostic {
    if info.contains("tab")
        && let Some(d) = tab_indentation(text, at.line())
    {
        return d;
    }
    let p = pos(at);
    Diagnostic::error(
        "yaml-syntax",
        Span::new(p, p),
        format!("YAML syntax error: {info}"),
    )
    .with_help(
        "check the indentation and quoting near here; a value that contains `: ` or ` #`, \
         or starts with `{`, `[`, `*`, `&`, `!`, `%`, `@` or a backquote, must be quoted",
    )
}

/// The scanner reports a tab where the scalar *before* it started; point at
/// the first tab used as indentation at or after that line instead.
fn tab_indentation(text: &str, from_line: usize) -> Option<Diagnostic> {
    text.lines()
        .enumerate()
        .skip(from_line.saturating_sub(1))
        .find_map(|(i, line)| {
            let indent: &str = &line[..line.len() - line.trim_start().len()];
            indent.find('\t').map(|col| {
                let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
                let col = u32::try_from(col + 1).unwrap_or(u32::MAX);
                Diagnostic::error(
                    "yaml-syntax",
                    Span::new(
                        Pos { line: line_no, col },
                        Pos {
                            line: line_no,
                            col: col + 1,
                        },
                    ),
                    "YAML syntax error: a tab is used for indentation",
                )
                .with_help("YAML allows only spaces for indentation; replace the tab with spaces")
            })
        })
}

impl Builder {
    fn on_event(&mut self, event: Event<'_>, at: YamlSpan) -> Result<(), Diagnostic> {
        let here = span(&at);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::error(
                        "multiple-documents",
                        here,
                        "a playbook is a single YAML document, but a second one starts here",
                    )
                    .with_help("remove this `---` or split the file into two playbooks"));
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = &tag {
                    let core_str = tag.is_yaml_core_schema() && tag.suffix == "str";
                    if !core_str {
                        return Err(Diagnostic::error(
                            "yaml-tag",
                            here,
                            format!("YAML tag `{}{}` is not supported", tag.handle, tag.suffix),
                        )
                        .with_help("remove the tag; to force a string, quote the value"));
                    }
                }
                let plain = style == ScalarStyle::Plain && tag.is_none();
                let node = Node {
                    kind: NodeKind::Scalar(Scalar {
                        text: text.into_owned(),
                        plain,
                    }),
                    span: here,
                };
                self.count(1, here)?;
                self.finish(node, anchor)
            }
            Event::Alias(id) => {
                let Some(size) = self.anchors.get(&id).map(Node::size) else {
                    return Err(Diagnostic::error(
                        "yaml-alias",
                        here,
                        "alias refers to an unknown anchor",
                    ));
                };
                // Charge the expansion before copying it.
                self.count(size, here)?;
                let mut node = self.anchors[&id].clone();
                node.span = here;
                self.finish(node, 0)
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag)
                if tag.is_some() =>
            {
                let _ = anchor;
                Err(Diagnostic::error(
                    "yaml-tag",
                    here,
                    "YAML tags on lists and mappings are not supported",
                )
                .with_help("remove the tag"))
            }
            Event::SequenceStart(anchor, _) => {
                self.enter(here)?;
                self.stack.push(Frame::Seq {
                    span: here,
                    anchor,
                    items: Vec::new(),
                });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.enter(here)?;
                self.stack.push(Frame::Map {
                    span: here,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    seen: HashMap::new(),
                    skip_value: false,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    span: start,
                    anchor,
                    items,
                }) => {
                    let node = Node {
                        kind: NodeKind::Seq(items),
                        span: Span::new(start.start, here.end),
                    };
                    self.finish(node, anchor)
                }
                _ => Err(syntax_error_at(here, "unbalanced sequence end")),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map {
                    span: start,
                    anchor,
                    entries,
                    ..
                }) => {
                    let entries = merge_keys(entries, &mut self.diagnostics);
                    let node = Node {
                        kind: NodeKind::Map(entries),
                        span: Span::new(start.start, here.end),
                    };
                    self.finish(node, anchor)
                }
                _ => Err(syntax_error_at(here, "unbalanced mapping end")),
            },
        }
    }

    fn count(&mut self, n: usize, at: Span) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::error(
                "too-large",
                at,
                format!(
                    "the playbook expands to more than {} YAML nodes here; refusing to read further",
                    self.limits.max_nodes
                ),
            )
            .with_help(
                "this usually means aliases (`*name`) that expand exponentially \
                 (a \"billion laughs\" file); split the playbook or remove the aliases",
            ));
        }
        Ok(())
    }

    fn enter(&mut self, at: Span) -> Result<(), Diagnostic> {
        self.count(1, at)?;
        if self.stack.len() >= self.limits.max_depth {
            return Err(Diagnostic::error(
                "too-deep",
                at,
                format!(
                    "lists and mappings are nested more than {} levels deep here",
                    self.limits.max_depth
                ),
            )
            .with_help("a playbook never needs this much nesting; flatten the structure"));
        }
        Ok(())
    }

    /// Hands a completed node to its parent (or makes it the root).
    fn finish(&mut self, node: Node, anchor: usize) -> Result<(), Diagnostic> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                key,
                seen,
                skip_value,
                ..
            }) => {
                match key.take() {
                    None => {
                        // This node is a key.
                        let text = match &node.kind {
                            NodeKind::Scalar(s) => s.text.clone(),
                            _ => {
                                return Err(Diagnostic::error(
                                    "complex-key",
                                    node.span,
                                    "mapping keys must be plain text, not lists or mappings",
                                ));
                            }
                        };
                        if let Some(first) = seen.get(&text) {
                            self.diagnostics.push(
                                Diagnostic::error(
                                    "duplicate-key",
                                    node.span,
                                    format!("duplicate key `{text}` in this mapping"),
                                )
                                .with_note(*first, "first defined here")
                                .with_help("remove one of them; ward does not let the last one win silently"),
                            );
                            *skip_value = true;
                        } else if text != "<<" {
                            seen.insert(text, node.span);
                        }
                        *key = Some(node);
                    }
                    Some(k) => {
                        if std::mem::take(skip_value) {
                            return Ok(());
                        }
                        entries.push(Entry {
                            key: k,
                            value: node,
                        });
                    }
                }
                Ok(())
            }
        }
    }
}

fn syntax_error_at(at: Span, info: &str) -> Diagnostic {
    Diagnostic::error("yaml-syntax", at, format!("YAML syntax error: {info}"))
}

/// Applies YAML merge keys (`<<: *base` or `<<: [*a, *b]`): merged entries
/// fill in keys the mapping does not set itself; explicit keys always win.
fn merge_keys(entries: Vec<Entry>, diagnostics: &mut Vec<Diagnostic>) -> Vec<Entry> {
    let is_merge =
        |e: &Entry| matches!(&e.key.kind, NodeKind::Scalar(s) if s.plain && s.text == "<<");
    if !entries.iter().any(is_merge) {
        return entries;
    }
    let (merges, mut own): (Vec<Entry>, Vec<Entry>) = entries.into_iter().partition(is_merge);
    let mut present: std::collections::HashSet<String> = own
        .iter()
        .filter_map(|e| e.key.as_str().map(str::to_owned))
        .collect();
    for merge in merges {
        let sources: Vec<Node> = match merge.value.kind {
            NodeKind::Map(_) => vec![merge.value],
            NodeKind::Seq(items) => items,
            NodeKind::Scalar(_) => {
                diagnostics.push(
                    Diagnostic::error(
                        "merge-key",
                        merge.value.span,
                        "`<<` must be followed by an alias of a mapping (`<<: *name`)",
                    )
                    .with_help("define the mapping with `&name` and merge it with `<<: *name`"),
                );
                continue;
            }
        };
        for source in sources {
            match source.kind {
                NodeKind::Map(src_entries) => {
                    for e in src_entries {
                        if let Some(k) = e.key.as_str()
                            && present.insert(k.to_owned())
                        {
                            own.push(e);
                        }
                    }
                }
                _ => diagnostics.push(Diagnostic::error(
                    "merge-key",
                    source.span,
                    "only mappings can be merged with `<<`",
                )),
            }
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Node {
        let (root, diags) = load(text, Limits::default());
        assert!(diags.is_empty(), "{diags:?}");
        root.expect("root")
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let root = ok("a: 1\nlist:\n  - x\n  - \"y\"\n");
        let map = root.as_map().expect("map");
        assert_eq!(map[1].key.span.start, Pos { line: 2, col: 1 });
        let items = map[1].value.as_seq().expect("seq");
        assert_eq!(items[1].span.start, Pos { line: 4, col: 5 });
        assert!(!items[1].as_scalar().expect("scalar").plain);
    }

    #[test]
    fn duplicate_keys_are_errors_and_first_wins() {
        let (root, diags) = load("a: 1\nb: 2\na: 3\n", Limits::default());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, "duplicate-key");
        assert_eq!(diags[0].span.start.line, 3);
        let map = root.expect("root");
        let entries = map.as_map().expect("map");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].value.as_str(), Some("1"));
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let (root, diags) = load(&text, Limits::default());
        assert!(root.is_none());
        assert_eq!(diags[0].code, "too-large");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(10_000) + &"]".repeat(10_000);
        let (root, diags) = load(&text, Limits::default());
        assert!(root.is_none());
        assert!(
            matches!(diags[0].code, "too-deep" | "yaml-syntax"),
            "{diags:?}"
        );
    }

    #[test]
    fn merge_keys_fill_in_missing_keys() {
        let root = ok("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
        let m = &root.as_map().expect("map")[1].value;
        let entries = m.as_map().expect("map");
        let get = |k: &str| {
            entries
                .iter()
                .find(|e| e.key.as_str() == Some(k))
                .and_then(|e| e.value.as_str())
        };
        assert_eq!(get("x"), Some("1"));
        assert_eq!(get("y"), Some("3"));
    }

    #[test]
    fn second_document_is_an_error() {
        let (_, diags) = load("a: 1\n---\nb: 2\n", Limits::default());
        assert_eq!(diags[0].code, "multiple-documents");
    }
}
