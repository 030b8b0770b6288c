//! Templates in playbook strings (minijinja, strict undefined).
//!
//! Only strings that contain `{{`, `{%` or `{#` are templates; the rest are
//! used as written, which keeps large playbooks fast to plan. Errors are
//! mapped back to the line and column in the playbook file.

mod context;
mod secret;

use std::cell::Cell;
use std::collections::HashSet;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};

use crate::diagnostic::Diagnostic;
use crate::source::{Pos, SourceFile, Span};
use crate::yaml::{Node, NodeKind, Scalar};

pub use context::{OverrideError, RunFacts, TemplateContext, override_value};
pub use secret::{
    FingerprintKey, MASK, MIN_REDACTED_LEN, Redactor, SecretUse, Secrets, is_secret_name,
};

/// Work one template may do (minijinja fuel: about one unit per instruction
/// and per 64 bytes allocated). Plenty for building paths and command lines;
/// it stops `range(100000)` inside `range(100000)` in a fraction of a second,
/// and bounds what one template may allocate to some 30 MB.
pub const FUEL: u64 = 500_000;

/// The most text one template may produce. Larger values could not be an
/// argument or an environment value anyway (Linux caps one at 128 KiB).
pub const MAX_OUTPUT: usize = 1 << 20;

/// A place in a rendered node whose value was made from a secret.
pub type Tainted = (Span, SecretUse);

/// A rendered scalar and, if it was made from a secret, which one.
#[derive(Clone, Debug)]
pub struct Rendered {
    /// The text.
    pub text: String,
    /// The secret variable it uses, if any.
    pub secret: Option<SecretUse>,
}

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
        env.set_fuel(Some(FUEL));
        // `debug()` prints the whole context, secrets included, without
        // naming them, which would defeat the taint check below.
        env.remove_global("debug");
        env.add_filter("quote", |v: Value| -> Result<String, minijinja::Error> {
            Ok(crate::shell::quote(&value_text(&v, MAX_OUTPUT)?))
        });
        env.set_formatter(|out, _state, value| {
            // Shell lines want `true`, not Python's `True`, and nothing for none.
            // Every value printed draws on the template's output budget.
            let left = OUTPUT_LEFT.get();
            let text = value_text(value, left)?;
            OUTPUT_LEFT.set(left - text.len());
            out.write_str(&text).map_err(|_| {
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
        checked_size(with_output_budget(|| self.env.render_str(text, ctx))?)
    }

    /// The top-level names a template reads (variables, and globals such
    /// as `range`); empty for plain text or a template that does not parse
    /// (rendering reports that). A static over-approximation: a name in an
    /// `{% if %}` branch that does not run still counts, which is what the
    /// secret taint wants.
    pub fn names(&self, text: &str) -> HashSet<String> {
        if !is_template(text) {
            return HashSet::new();
        }
        self.env
            .template_from_str(text)
            .map(|t| t.undeclared_variables(false))
            .unwrap_or_default()
    }

    /// Every name read by the templates inside a node.
    pub fn node_names(&self, node: &Node, out: &mut HashSet<String>) {
        match &node.kind {
            NodeKind::Scalar(s) => out.extend(self.names(&s.text)),
            NodeKind::Seq(items) => items.iter().for_each(|i| self.node_names(i, out)),
            NodeKind::Map(entries) => entries.iter().for_each(|e| self.node_names(&e.value, out)),
        }
    }

    /// Evaluates an `if:` expression (with or without `{{ }}`) to a bool.
    /// On error, also returns the template text the error's range refers to.
    pub fn eval_condition(
        &self,
        expr: &str,
        ctx: &Value,
    ) -> Result<bool, (minijinja::Error, String)> {
        let template = condition_template(expr);
        match with_output_budget(|| self.env.render_str(&template, ctx)) {
            Ok(out) => Ok(out == "1"),
            Err(e) => Err((e, template)),
        }
    }

    /// The names an `if:` expression reads.
    pub fn condition_names(&self, expr: &str) -> HashSet<String> {
        self.names(&condition_template(expr))
    }

    /// Renders every template string inside a node; other scalars are kept.
    /// A scalar that is exactly one `{{ expr }}` keeps the value's own type
    /// (the string `"010"` stays a string, the number 5432 a number); any
    /// other template makes text, which is never read again as YAML.
    /// On success, also returns the places whose value uses a secret.
    pub fn render_node(
        &self,
        node: &Node,
        ctx: &Value,
        secrets: &Secrets,
        source: &SourceFile,
        what: &dyn Fn() -> String,
    ) -> Result<(Node, Vec<Tainted>), Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut tainted = Vec::new();
        let rendered =
            self.render_node_inner(node, ctx, secrets, source, what, &mut errors, &mut tainted);
        if errors.is_empty() {
            Ok((rendered, tainted))
        } else {
            Err(errors)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn render_node_inner(
        &self,
        node: &Node,
        ctx: &Value,
        secrets: &Secrets,
        source: &SourceFile,
        what: &dyn Fn() -> String,
        errors: &mut Vec<Diagnostic>,
        tainted: &mut Vec<Tainted>,
    ) -> Node {
        let kind = match &node.kind {
            NodeKind::Scalar(s) if is_template(&s.text) => {
                if !secrets.is_empty()
                    && let Some(used) = secrets.used_by(&self.names(&s.text))
                {
                    tainted.push((locate_name(node, source, &used.var), used));
                }
                let rendered = match single_expression(&s.text) {
                    // `key: "{{ list_var }}"` keeps the list (or mapping) itself.
                    // Rendering first gives strict-undefined errors with their place.
                    Some(expr) => self.render(&s.text, ctx).and_then(|_| {
                        self.env
                            .compile_expression(expr)
                            .and_then(|e| e.eval(ctx))
                            .and_then(|v| native_node(&v, node.span))
                    }),
                    // Anything else is text and stays text: reading it again
                    // as YAML would turn `"{{ y }}.{{ m }}"` (2026.10) into
                    // the number 2026.1, or `"0{{ n }}"` into a number.
                    None => self.render(&s.text, ctx).map(|text| Node {
                        kind: NodeKind::Scalar(Scalar { text, plain: false }),
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
                    .map(|i| self.render_node_inner(i, ctx, secrets, source, what, errors, tainted))
                    .collect(),
            ),
            NodeKind::Map(entries) => NodeKind::Map(
                entries
                    .iter()
                    .map(|e| crate::yaml::Entry {
                        key: e.key.clone(),
                        value: self.render_node_inner(
                            &e.value, ctx, secrets, source, what, errors, tainted,
                        ),
                    })
                    .collect(),
            ),
        };
        Node {
            kind,
            span: node.span,
        }
    }

    /// Renders a scalar node to text, with a diagnostic on failure, and
    /// says whether the text was made from a secret.
    pub fn render_scalar(
        &self,
        node: &Node,
        ctx: &Value,
        secrets: &Secrets,
        source: &SourceFile,
        what: &str,
    ) -> Result<Rendered, Diagnostic> {
        let text = node.as_str().unwrap_or("");
        let text = self
            .render(text, ctx)
            .map_err(|e| template_diagnostic(&e, node, source, what))?;
        let secret = match node.as_str() {
            // Without secrets there is nothing to look for (and no second parse).
            Some(t) if is_template(t) && !secrets.is_empty() => secrets.used_by(&self.names(t)),
            _ => None,
        };
        Ok(Rendered { text, secret })
    }
}

/// An `if:` expression (with or without `{{ }}`) as a template that prints
/// `1` when it is true: through `{% if %}` so strict mode refuses undefined
/// variables, which a bare expression evaluation would quietly treat as
/// false.
fn condition_template(expr: &str) -> String {
    let trimmed = expr.trim();
    let inner = trimmed
        .strip_prefix("{{")
        .and_then(|s| s.strip_suffix("}}"))
        .unwrap_or(trimmed);
    format!("{{% if {inner} %}}1{{% endif %}}")
}

/// Refuses output larger than [`MAX_OUTPUT`] (fuel bounds the work; this
/// bounds what a value may hold).
fn checked_size(text: String) -> Result<String, minijinja::Error> {
    if text.len() > MAX_OUTPUT {
        return Err(minijinja::Error::new(
            ErrorKind::OutOfFuel,
            format!(
                "its output is {} bytes, more than the {} KiB a value may hold",
                text.len(),
                MAX_OUTPUT / 1024
            ),
        ));
    }
    Ok(text)
}

/// The expression inside a scalar that is exactly one `{{ ... }}`, with
/// or without whitespace control (`{{- x -}}`, `{{+ x +}}`): the only
/// scalars whose value keeps its type. Whitespace around the tag counts
/// only where the tag itself removes it (and a final newline, which the
/// engine drops), so the value is exactly what rendering would print.
fn single_expression(text: &str) -> Option<&str> {
    let start = text.trim_start();
    let inner = start.strip_prefix("{{")?;
    let (inner, removes_before) = match inner.as_bytes().first() {
        Some(b'-') => (&inner[1..], true),
        Some(b'+') => (&inner[1..], false),
        _ => (inner, false),
    };
    if start.len() != text.len() && !removes_before {
        return None;
    }
    let end = inner.trim_end();
    let trailing = &inner[end.len()..];
    let inner = end.strip_suffix("}}")?;
    let (inner, removes_after) = match inner.as_bytes().last() {
        Some(b'-') => (&inner[..inner.len() - 1], true),
        Some(b'+') => (&inner[..inner.len() - 1], false),
        _ => (inner, false),
    };
    if !(trailing.is_empty() || trailing == "\n" || removes_after) {
        return None;
    }
    let simple = !inner.contains("{{")
        && !inner.contains("}}")
        && !inner.contains("{%")
        && !inner.contains("%}")
        && !inner.contains("{#")
        && !inner.contains("#}");
    simple.then_some(inner)
}

/// A template value as a node: lists and mappings keep their shape. Strings
/// become quoted scalars, so their text is never read again as YAML (`"010"`,
/// `"1.10"` and `"~"` stay strings); numbers, booleans and null become plain
/// scalars that read as what they are.
fn native_node(v: &Value, span: Span) -> Result<Node, minijinja::Error> {
    // A value JSON cannot hold (an integer past 64 bits) is an error, not
    // a silent null.
    let json = serde_json::to_value(v).map_err(|e| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("its value cannot be stored (whole numbers must fit in 64 bits): {e}"),
        )
    })?;
    Ok(json_node(&json, span))
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
        J::String(s) => NodeKind::Scalar(Scalar {
            text: s.clone(),
            plain: false,
        }),
        J::Null => scalar(String::new()),
        J::Bool(b) => scalar(b.to_string()),
        J::Number(n) => scalar(n.to_string()),
    };
    Node { kind, span }
}

thread_local! {
    /// Bytes the template being rendered may still print. Fuel does not
    /// count what printing a value costs, and a value can be huge without
    /// work (`['x'] * 100000000` is a lazy repetition): printing draws on
    /// this budget, so such a value fails at [`MAX_OUTPUT`] bytes instead
    /// of being built whole first.
    static OUTPUT_LEFT: Cell<usize> = const { Cell::new(MAX_OUTPUT) };
}

/// Runs one render with a fresh output budget.
fn with_output_budget<T>(render: impl FnOnce() -> T) -> T {
    let before = OUTPUT_LEFT.replace(MAX_OUTPUT);
    let result = render();
    OUTPUT_LEFT.set(before);
    result
}

fn too_large(len: Option<usize>) -> minijinja::Error {
    let max = MAX_OUTPUT / 1024;
    minijinja::Error::new(
        ErrorKind::OutOfFuel,
        match len {
            Some(len) if len > MAX_OUTPUT => {
                format!("its output is {len} bytes, more than the {max} KiB a value may hold")
            }
            _ => format!("its output is more than the {max} KiB a value may hold"),
        },
    )
}

/// How a value prints in a template: `true`/`false`, empty for none; an
/// error if it would be longer than `limit` bytes, found before it is
/// built.
fn value_text(v: &Value, limit: usize) -> Result<String, minijinja::Error> {
    if v.is_none() || v.is_undefined() {
        return Ok(String::new());
    }
    if let Some(s) = v.as_str() {
        return if s.len() > limit {
            Err(too_large(Some(s.len())))
        } else {
            Ok(s.to_owned())
        };
    }
    if v.kind() == minijinja::value::ValueKind::Bool {
        return Ok(if v.is_true() { "true" } else { "false" }.to_owned());
    }
    // Every item prints at least one byte: count items (and string bytes)
    // first, which visits at most `limit` of them, then print into a
    // buffer that refuses to grow past the limit.
    let mut left = limit;
    if !fits(v, &mut left) {
        return Err(too_large(None));
    }
    let mut out = Capped {
        text: String::new(),
        limit,
    };
    use std::fmt::Write as _;
    write!(out, "{v}").map_err(|_| too_large(None))?;
    Ok(out.text)
}

/// Takes a lower bound of the printed size of `v` from `left`; false if
/// it does not fit.
fn fits(v: &Value, left: &mut usize) -> bool {
    use minijinja::value::ValueKind as K;
    let take = |left: &mut usize, n: usize| match left.checked_sub(n) {
        Some(rest) => {
            *left = rest;
            true
        }
        None => false,
    };
    match v.kind() {
        K::String => take(left, v.as_str().map_or(0, str::len).max(1)),
        K::Seq | K::Iterable | K::Map => {
            if let Some(n) = v.len()
                && n > *left
            {
                return false;
            }
            let Ok(items) = v.try_iter() else {
                return take(left, 1);
            };
            for item in items {
                if !take(left, 1) {
                    return false;
                }
                let inner = if v.kind() == K::Map {
                    v.get_item(&item).unwrap_or_default()
                } else {
                    item
                };
                if !fits(&inner, left) {
                    return false;
                }
            }
            true
        }
        _ => take(left, 1),
    }
}

/// A string that refuses to grow past `limit` bytes.
struct Capped {
    text: String,
    limit: usize,
}

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.text.len() + s.len() > self.limit {
            return Err(std::fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
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
        ErrorKind::OutOfFuel => (
            "template-budget",
            format!("template in {what} does too much work: {detail}"),
            format!(
                "ward stops a template after about {FUEL} steps of work or {} KiB of output; \
                 build large values outside the playbook and pass them in",
                MAX_OUTPUT / 1024
            ),
        ),
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

/// The place of variable `name` inside the template scalar `node`: its first
/// use after a `{{` or `{%`, else the whole node.
pub fn locate_name(node: &Node, source: &SourceFile, name: &str) -> Span {
    let text = node.as_str().unwrap_or("");
    let opening = [text.find("{{"), text.find("{%")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(0);
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut from = opening;
    while let Some(at) = text
        .get(from..)
        .and_then(|t| t.find(name))
        .map(|i| i + from)
    {
        let end = at + name.len();
        let before = text[..at].chars().next_back().is_some_and(is_word);
        let after = text[end..].chars().next().is_some_and(is_word);
        if !before && !after {
            return locate(text, at, end, node, source).unwrap_or(node.span);
        }
        from = end;
    }
    node.span
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
