//! Small readers shared by the top-level and step decoders.

use serde::de::DeserializeOwned;

use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::model::{RetryPolicy, Spanned};
use crate::yaml::{Node, NodeKind, from_node};

/// Keys allowed at the top of a playbook.
pub const PLAYBOOK_KEYS: &[&str] = &[
    "ward",
    "name",
    "description",
    "vars",
    "defaults",
    "max_parallel",
    "lock",
    "steps",
    "schedule",
    "jitter",
    "overlap",
    "timezone",
    "notify",
    "metrics",
    "preconditions",
    "max_age",
    "history",
    "rehearse",
    "restore",
];

/// Keys allowed in `defaults:`.
pub const DEFAULTS_KEYS: &[&str] = &["timeout", "retry"];

/// Keys allowed in a step.
pub const STEP_KEYS: &[&str] = &[
    "id",
    "name",
    "action",
    "with",
    "run",
    "cmd",
    "needs",
    "after",
    "when",
    "if",
    "env",
    "timeout",
    "retry",
    "compensate",
    "creates",
    "ok_codes",
    "keep_children",
    "confirm",
    "for_each",
    "key",
    "max_parallel",
    "priority",
    "max_failed",
    "workers",
    "on_item",
];

/// The longest playbook name or step id. They name files (a step's log is
/// `<id>.<attempt>.log`, a run lock is named after the playbook), and a
/// file name has at most 255 bytes: a longer id would lose the step's
/// output at run time instead of being refused here.
pub const MAX_NAME: usize = 128;

/// True for names matching `[a-z0-9][a-z0-9_-]*` of at most [`MAX_NAME`]
/// characters (playbook names and step ids).
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= MAX_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub use crate::model::is_identifier;

/// Where a value is being read, for messages: `top level`, `step \`x\``.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    /// e.g. "step `dump-db`".
    pub owner: &'a str,
}

impl Ctx<'_> {
    /// Reads a typed value; on error records a diagnostic naming the key and owner.
    pub fn value<T: DeserializeOwned>(
        &self,
        key: &str,
        node: &Node,
        diags: &mut Diagnostics,
    ) -> Option<Spanned<T>> {
        match from_node::<T>(node) {
            Ok(v) => Some(Spanned::new(v, node.span)),
            Err(e) => {
                let message = match e.code {
                    "unknown-key" | "missing-key" | "duplicate-key" => {
                        format!("{} in `{key}` of {}", e.message, self.owner)
                    }
                    _ => format!("invalid `{key}` in {}: {}", self.owner, e.message),
                };
                diags.push(
                    Diagnostic::error(e.code, e.span.unwrap_or(node.span), message)
                        .with_help_opt(e.help),
                );
                None
            }
        }
    }

    /// Reports an unknown key, suggesting the closest known one.
    pub fn unknown_key(&self, key: &Node, known: &[&str], diags: &mut Diagnostics) {
        let text = key.as_str().unwrap_or("?");
        let help = suggest(text, known.iter().copied()).unwrap_or_else(|| {
            let list: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
            format!("known keys here are {}", list.join(", "))
        });
        diags.push(
            Diagnostic::error(
                "unknown-key",
                key.span,
                format!("unknown key `{text}` in {}", self.owner),
            )
            .with_help(help),
        );
    }

    /// Reads a list of step ids; a single string counts as a list of one.
    pub fn step_refs(
        &self,
        key: &str,
        node: &Node,
        diags: &mut Diagnostics,
    ) -> Vec<Spanned<String>> {
        let items: Vec<&Node> = match &node.kind {
            NodeKind::Seq(items) => items.iter().collect(),
            NodeKind::Scalar(_) if node.is_null() => Vec::new(),
            NodeKind::Scalar(_) => vec![node],
            NodeKind::Map(_) => {
                diags.push(
                    Diagnostic::error(
                        "invalid-type",
                        node.span,
                        format!(
                            "invalid `{key}` in {}: expected a list of step ids, found a mapping",
                            self.owner
                        ),
                    )
                    .with_help(format!("write `{key}: [step-a, step-b]`")),
                );
                return Vec::new();
            }
        };
        items
            .into_iter()
            .filter_map(|item| self.value::<String>(key, item, diags))
            .collect()
    }

    /// Requires a mapping; reports and returns None otherwise.
    pub fn mapping<'n>(
        &self,
        key: &str,
        node: &'n Node,
        diags: &mut Diagnostics,
    ) -> Option<&'n [crate::yaml::Entry]> {
        if node.is_null() {
            return Some(&[]);
        }
        match node.as_map() {
            Some(m) => Some(m),
            None => {
                diags.push(Diagnostic::error(
                    "invalid-type",
                    node.span,
                    format!(
                        "invalid `{key}` in {}: expected a mapping, found {}",
                        self.owner,
                        node.kind_name()
                    ),
                ));
                None
            }
        }
    }
}

/// Reads `retry:` and checks the policy's numbers.
pub(super) fn read_retry(
    ctx: &Ctx<'_>,
    node: &Node,
    diags: &mut Diagnostics,
) -> Option<Spanned<RetryPolicy>> {
    let policy = ctx.value::<RetryPolicy>("retry", node, diags)?;
    let problems = policy.problems();
    for p in &problems {
        diags.push(Diagnostic::error(
            "invalid-value",
            node.span,
            format!("invalid `retry` in {}: {p}", ctx.owner),
        ));
    }
    problems.is_empty().then_some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_identifiers() {
        assert!(is_name("dump-db_2"));
        assert!(!is_name("Dump"));
        assert!(!is_name("-x"));
        assert!(!is_name(""));
        assert!(is_name(&"y".repeat(MAX_NAME)));
        assert!(!is_name(&"y".repeat(MAX_NAME + 1)));
        assert!(is_identifier("pg_host"));
        assert!(!is_identifier("pg-host"));
        assert!(!is_identifier("1x"));
    }
}
