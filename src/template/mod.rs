//! Templates in playbook strings (minijinja, strict undefined).
//!
//! Only strings that contain `{{`, `{%` or `{#` are templates; the rest are
//! used as written, which keeps large playbooks fast to plan. Errors are
//! mapped back to the line and column in the playbook file.

mod context;
mod quote;

use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::diagnostic::Diagnostic;
use crate::source::{Pos, SourceFile, Span};
use crate::yaml::{Node, NodeKind, Scalar};

pub use context::{RunFacts, TemplateContext, var_overrides};
pub use quote::shell_quote;

/// The template engine with ward's settings.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Templates {
        Templates::new()
    }
}

/// True if `text` contains template syntax.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

impl Templates {
    /// An environment with strict undefined variables, no HTML escaping,
    /// the `quote` filter, and `true`/`false`/empty output for bools/none.
    pub fn new() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_recursion_limit(64);
        env.add_filter("quote", |v: Value| shell_quote(&value_text(&v)));
        env.set_formatter(|out, _state, value| {
            // Shell lines want `true`, not Python's `True`, and nothing for none.
            out.write_str(&value_text(value)).map_err(|_| {
                minijinja::Error::new(
                    minijinja::ErrorKind::WriteFailure,
                    "cannot write template output",
                )
            })
        });
        Templates { env }
    }

    /// Renders one template string.
    pub fn render(&self, text: &str, ctx: &Value) -> Result<String, minijinja::Error> {
        if !is_template(text) {
            return Ok(text.to_owned());
        }
        self.env.render_str(text, ctx)
    }

    /// Evaluates an `if:` expression (with or without `{{ }}`) to a bool.
    /// On error, also returns the template text the error's range refers to.
    pub fn eval_condition(
        &self,
        expr: &str,
        ctx: &Value,
    ) -> Result<bool, (minijinja::Error, String)> {
        let trimmed = expr.trim();
        let inner = trimmed
            .strip_prefix("{{")
            .and_then(|s| s.strip_suffix("}}"))
            .unwrap_or(trimmed);
        // Through `{% if %}` so strict mode refuses undefined variables,
        // which a bare expression evaluation would quietly treat as false.
        let template = format!("{{% if {inner} %}}1{{% endif %}}");
        match self.env.render_str(&template, ctx) {
            Ok(out) => Ok(out == "1"),
            Err(e) => Err((e, template)),
        }
    }

    /// Renders every template string inside a node; other scalars are kept.
    /// Rendered scalars become plain so `"{{ port }}"` can fill a number.
    pub fn render_node(
        &self,
        node: &Node,
        ctx: &Value,
        source: &SourceFile,
        what: &dyn Fn() -> String,
    ) -> Result<Node, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let rendered = self.render_node_inner(node, ctx, source, what, &mut errors);
        if errors.is_empty() {
            Ok(rendered)
        } else {
            Err(errors)
        }
    }

    fn render_node_inner(
        &self,
        node: &Node,
        ctx: &Value,
        source: &SourceFile,
        what: &dyn Fn() -> String,
        errors: &mut Vec<Diagnostic>,
    ) -> Node {
        let kind = match &node.kind {
            NodeKind::Scalar(s) if is_template(&s.text) => {
                let rendered = match single_expression(&s.text) {
                    // `key: "{{ list_var }}"` keeps the list (or mapping) itself.
                    // Rendering first gives strict-undefined errors with their place.
                    Some(expr) => self.env.render_str(&s.text, ctx).and_then(|_| {
                        self.env
                            .compile_expression(expr)
                            .and_then(|e| e.eval(ctx))
                            .map(|v| native_node(&v, node.span))
                    }),
                    None => self.env.render_str(&s.text, ctx).map(|text| Node {
                        kind: NodeKind::Scalar(Scalar { text, plain: true }),
                        span: node.span,
                    }),
                };
                match rendered {
                    Ok(n) => return n,
                    Err(e) => {
                        errors.push(template_diagnostic(&e, node, source, &what()));
                        node.kind.clone()
                    }
                }
            }
            NodeKind::Scalar(_) => node.kind.clone(),
            NodeKind::Seq(items) => NodeKind::Seq(
                items
                    .iter()
                    .map(|i| self.render_node_inner(i, ctx, source, what, errors))
                    .collect(),
            ),
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .iter()
                    .map(|e| crate::yaml::Entry {
                        key: e.key.clone(),
                        value: self.render_node_inner(&e.value, ctx, source, what, errors),
                    })
                    .collect(),
            ),
        };
        Node {
            kind,
            span: node.span,
        }
    }

    /// Renders a scalar node to text, with a diagnostic on failure.
    pub fn render_scalar(
        &self,
        node: &Node,
        ctx: &Value,
        source: &SourceFile,
        what: &str,
    ) -> Result<String, Diagnostic> {
        let text = node.as_str().unwrap_or("");
        self.render(text, ctx)
            .map_err(|e| template_diagnostic(&e, node, source, what))
    }
}

/// The expression inside a scalar that is exactly one `{{ ... }}`.
fn single_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let simple = !inner.contains("{{") && !inner.contains("}}") && !inner.contains("{%");
    simple.then_some(inner)
}

/// A template value as a node: lists and mappings keep their shape, scalars
/// become plain text that the parameter's type then reads.
fn native_node(v: &Value, span: Span) -> Node {
    let json = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    json_node(&json, span)
}

fn json_node(json: &serde_json::Value, span: Span) -> Node {
    use serde_json::Value as J;
    let scalar = |text: String| NodeKind::Scalar(Scalar { text, plain: true });
    let kind = match json {
        J::Array(items) => NodeKind::Seq(items.iter().map(|i| json_node(i, span)).collect()),
        J::Object(map) => NodeKind::Map(
            map.iter()
                .map(|(k, v)| crate::yaml::Entry {
                    key: Node {
                        kind: NodeKind::Scalar(Scalar {
                            text: k.clone(),
                            plain: false,
                        }),
                        span,
                    },
                    value: json_node(v, span),
                })
                .collect(),
        ),
        J::String(s) => scalar(s.clone()),
        J::Null => scalar(String::new()),
        J::Bool(b) => scalar(b.to_string()),
        J::Number(n) => scalar(n.to_string()),
    };
    Node { kind, span }
}

/// How a value prints in a template: `true`/`false`, empty for none.
fn value_text(v: &Value) -> String {
    if v.is_none() || v.is_undefined() {
        String::new()
    } else if let Some(b) = v.as_str() {
        b.to_owned()
    } else if v.kind() == minijinja::value::ValueKind::Bool {
        if v.is_true() { "true" } else { "false" }.to_owned()
    } else {
        v.to_string()
    }
}

/// A diagnostic for a template error inside `node`, pointing as close to the
/// offending expression as the file allows.
pub fn template_diagnostic(
    e: &minijinja::Error,
    node: &Node,
    source: &SourceFile,
    what: &str,
) -> Diagnostic {
    let text = node.as_str().unwrap_or("");
    let detail = e
        .detail()
        .map(str::to_owned)
        .unwrap_or_else(|| e.kind().to_string());
    let (code, message, help) = match e.kind() {
        minijinja::ErrorKind::UndefinedError => {
            let name = e
                .range()
                .and_then(|r| text.get(r))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            let shown = if name.is_empty() {
                String::from("a variable")
            } else {
                format!("`{name}`")
            };
            (
                "undefined-variable",
                format!("undefined variable {shown} in {what}"),
                "define it under `vars:` or pass `--var name=value`; built-ins are under `ward.` (date, time, host, run_id)".to_owned(),
            )
        }
        _ => (
            "template",
            format!("template error in {what}: {detail}"),
            "check the `{{ ... }}` syntax; see docs/playbook.md#templates".to_owned(),
        ),
    };
    let span = e
        .range()
        .and_then(|r| locate(text, r.start, r.end, node, source))
        .unwrap_or(node.span);
    Diagnostic::error(code, span, message).with_help(help)
}

/// Maps a byte range inside a template string to a place in the file by
/// finding the snippet on the line it must be on.
fn locate(text: &str, start: usize, end: usize, node: &Node, source: &SourceFile) -> Option<Span> {
    let snippet = text.get(start..end)?.lines().next()?.trim();
    if snippet.is_empty() {
        return None;
    }
    let line_in_template = text.get(..start)?.matches('\n').count() as u32;
    let first_line = node.span.start.line;
    // Block scalars (`|`, `>`) start on the line after their indicator, and
    // folding can move text; search a few lines from the expected one.
    let expected = first_line + line_in_template;
    for line_no in expected..=expected + 2 {
        let line = source.line(line_no)?;
        let min_col = if line_no == first_line {
            node.span.start.col as usize - 1
        } else {
            0
        };
        let search_from = line
            .char_indices()
            .nth(min_col)
            .map_or(line.len(), |(i, _)| i);
        if let Some(byte) = line[search_from..].find(snippet) {
            let col = line[..search_from + byte].chars().count() as u32 + 1;
            let len = snippet.chars().count() as u32;
            return Some(Span::new(
                Pos { line: line_no, col },
                Pos {
                    line: line_no,
                    col: col + len,
                },
            ));
        }
    }
    None
}
