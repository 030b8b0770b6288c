//! Decodes `restore:` (its templates are rendered and its values typed by
//! validation: see `validate/restore.rs`).

use super::fields::Ctx;
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::Restore;
use crate::yaml::Node;

/// Keys of `restore:`.
pub const RESTORE_KEYS: &[&str] = &["snapshots", "snapshot_var", "guards", "marker"];

pub(super) fn decode(node: &Node, diags: &mut Diagnostics) -> Option<Restore> {
    let ctx = Ctx { owner: "`restore`" };
    let entries = ctx.mapping("restore", node, diags)?;
    let before = diags.error_count();
    for entry in entries {
        let key = entry.key.as_str().unwrap_or("");
        if !RESTORE_KEYS.contains(&key) {
            ctx.unknown_key(&entry.key, RESTORE_KEYS, diags);
        }
    }
    for key in ["snapshots", "snapshot_var"] {
        if !entries.iter().any(|e| e.key.as_str() == Some(key)) {
            diags.push(
                Diagnostic::error(
                    "missing-key",
                    node.span,
                    format!("`restore` has no `{key}`"),
                )
                .with_help(
                    "e.g. `restore: { snapshots: \"{{ snapshots }}\", snapshot_var: snapshot }`",
                ),
            );
        }
    }
    (diags.error_count() == before).then(|| Restore {
        node: node.clone(),
        span: node.span,
    })
}
