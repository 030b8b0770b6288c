//! Decodes `preconditions:`: a list of one-key mappings (`- tcp: db:5432`).
//!
//! Only the shape is checked here (a list, one known key per entry); the
//! values may hold templates and are rendered and typed by validation.

use crate::diagnostic::{Diagnostic, Diagnostics, suggest};
use crate::model::{Precondition, PreconditionKind, Spanned};
use crate::yaml::Node;

/// Decodes every entry; broken entries are reported and left out.
pub(super) fn decode_all(node: &Node, diags: &mut Diagnostics) -> Vec<Precondition> {
    if node.is_null() {
        return Vec::new();
    }
    let Some(items) = node.as_seq() else {
        diags.push(
            Diagnostic::error(
                "invalid-type",
                node.span,
                format!(
                    "`preconditions` must be a list of checks, found {}",
                    node.kind_name()
                ),
            )
            .with_help("write each check as a list item, e.g. `- path_exists: /srv/backup`"),
        );
        return Vec::new();
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| decode(i, item, diags))
        .collect()
}

fn known() -> String {
    PreconditionKind::names()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn decode(index: usize, node: &Node, diags: &mut Diagnostics) -> Option<Precondition> {
    let entries = match node.as_map() {
        Some(entries) if entries.len() == 1 => entries,
        Some(entries) => {
            let message = if entries.is_empty() {
                format!("precondition {} is empty", index + 1)
            } else {
                format!(
                    "precondition {} has {} keys; each list item is one check",
                    index + 1,
                    entries.len()
                )
            };
            diags.push(
                Diagnostic::error("invalid-value", node.span, message).with_help(
                    "write one check per list item: `- tcp: db:5432`, then `- path_exists: /srv`",
                ),
            );
            return None;
        }
        None => {
            diags.push(
                Diagnostic::error(
                    "invalid-type",
                    node.span,
                    format!(
                        "precondition {} must be a mapping such as `tcp: db:5432`, found {}",
                        index + 1,
                        node.kind_name()
                    ),
                )
                .with_help(format!("the checks are {}", known())),
            );
            return None;
        }
    };
    let entry = &entries[0];
    let name = entry.key.as_str().unwrap_or("");
    let Some(kind) = PreconditionKind::parse(name) else {
        let help = suggest(name, PreconditionKind::names())
            .unwrap_or_else(|| format!("the checks are {}", known()));
        diags.push(
            Diagnostic::error(
                "unknown-key",
                entry.key.span,
                format!("unknown precondition `{name}`"),
            )
            .with_help(help),
        );
        return None;
    };
    if entry.value.is_null() {
        diags.push(
            Diagnostic::error(
                "missing-key",
                entry.key.span,
                format!("precondition `{name}` has no value"),
            )
            .with_help(example(kind)),
        );
        return None;
    }
    Some(Precondition {
        kind: Spanned::new(kind, entry.key.span),
        value: entry.value.clone(),
        span: node.span,
    })
}

/// How a check is written, for help lines.
pub(crate) fn example(kind: PreconditionKind) -> &'static str {
    match kind {
        PreconditionKind::FreeSpace => "e.g. `free_space: {path: /srv/backup, min: 10G}`",
        PreconditionKind::PathExists => "e.g. `path_exists: /mnt/usb/backup`",
        PreconditionKind::PathAbsent => "e.g. `path_absent: /var/lib/ward/restore-in-progress`",
        PreconditionKind::Command => {
            "e.g. `command: [pg_isready, -h, db]` or `command: {argv: [...], timeout: 30s}`"
        }
        PreconditionKind::Tcp => {
            "e.g. `tcp: db.example:5432` or `tcp: {address: db:5432, timeout: 3s}`"
        }
        PreconditionKind::NotRunning => {
            "e.g. `not_running: fo_scheduler` or `not_running: {name: rsync, user: backup}`"
        }
        PreconditionKind::OnAcPower => "write `on_ac_power: true`",
    }
}
